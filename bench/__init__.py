"""``make bench``: how fast fhir-plao is, measured against its peers in one run on one machine.

Run it with ``make bench`` (or ``.venv/bin/python -m bench --help`` for the knobs). Every figure is
the median of several runs in the same process on the same machine; the table it prints holds
ratios between contenders measured side by side, so it says more than absolute numbers would.

Modules, one per benchmark: :mod:`bench.mapping` (case -> Bundle -> validated -> bytes),
:mod:`bench.validation` (the example Bundle, resources per second), :mod:`bench.push` and
:mod:`bench.pull` (against a local SEKMET or HAPI server), :mod:`bench.memory` (peak RSS of a
bulk push).
Nothing here is part of the ``fhir_plao`` package; only ``make bench`` and its smoke test use it.
"""
