"""``python -m fhir_plao.cli``: the same as the ``fhir-plao`` command."""

from fhir_plao.cli import main

raise SystemExit(main())
