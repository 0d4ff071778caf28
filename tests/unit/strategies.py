"""Hypothesis strategies that build valid :class:`fhir_plao.case.Case` objects.

Every field of every model in ``fhir_plao/case.py`` is drawn (``test_strategies_reach_every_field``
in ``test_roundtrip_property.py`` checks it), codes come from the code table by kind, ids are
unique across the case and every cross-reference (lab panel, evidence, medication reason,
lactation pregnancy) points at an item that exists.

Decimals keep their digits (``1.50``, ``-0.0``, ``-0``, ``0.000``, ``1E+2``, ``1.5E-7``); dates keep
their precision (``2023``, ``2023-06``, ``2023-06-14``, ``2023-06-14T09:30:00.5+03:00``, ``...Z``);
texts include non-ASCII letters, marks, symbols and odd spaces, never surrogates, never blank.

Nothing valid is left out on purpose: a valid case the mapping cannot carry is a bug, pinned by
a strict-xfail reproducer in ``KNOWN_BUGS`` of ``test_roundtrip_property.py``. Values that
used to trip the mapping are drawn on purpose: free texts equal to a text-only concept's text
or to the mapping's own code texts ("Pregnancy", "Imaging finding", ...), ids that look like
derived ones (``p1-delivery``, ``follow-up``), several lactations of one pregnancy, coded and
text-only imaging concepts in one study, ``Decimal('-0')``.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from hypothesis import strategies as st

from fhir_plao.case import (
    Care,
    Case,
    Delivery,
    Diagnosis,
    DxaScan,
    DxaScore,
    Finding,
    FollowUp,
    FollowUpPhase,
    Fracture,
    ImagingStudy,
    LabPanel,
    LabResult,
    Lactation,
    Medication,
    Outcome,
    Patient,
    Pregnancy,
    ReferenceRange,
    StatusObservation,
    Symptom,
    Vital,
    _before,
)
from fhir_plao.terminology import TERMINOLOGY

T = TypeVar("T")
Draw = Callable[[st.SearchStrategy[T]], T]

# --------------------------------------------------------------------------- code table


@cache
def keys(*kinds: str) -> tuple[str, ...]:
    found = tuple(sorted(TERMINOLOGY.keys_of(*kinds)))
    assert found, f"no code-table keys of kind {kinds}"
    return found


def coded(key: str) -> bool:
    return bool(TERMINOLOGY.concept(key).codings)


#: texts of the concepts that have no code (as a free name, such a text *is* the concept)
TEXT_ONLY_TEXTS = tuple(sorted({c.text for c in TERMINOLOGY if not c.codings}))
#: code.text values of the Observations the mapping codes by text only
MAPPING_TEXTS = ("Pregnancy", "Imaging finding", "Follow-up outcome", "Finding")

# --------------------------------------------------------------------------- text

_CHARS = st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S", "Zs"))

SAMPLE_TEXTS = (
    "Bel ağrısı, göğüs kafesi",  # noqa: RUF001 (Turkish dotless i, on purpose)
    "Knochendichte ↓, öfter Schmerzen",
    "naïve café — ½ dose",
    "Doğumdan 20 gün sonra şiddetli sırt ağrısı",  # noqa: RUF001
    "日本語のメモ",
    "emoji 🦴 ok",
    "1.50",
    "-0.0",
    "a; b",
    " leading and trailing ",
    "tab\there",
    "two\nlines",
    "Body height",  # a coded concept's text
    *MAPPING_TEXTS,
)


@cache
def texts(max_size: int = 16) -> st.SearchStrategy[str]:
    """Printable text that is not blank (no surrogates; no control characters but in samples)."""
    return st.one_of(
        st.sampled_from(SAMPLE_TEXTS), st.text(_CHARS, min_size=1, max_size=max_size)
    ).filter(lambda t: t.strip() != "")


def opt(s: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), s)


@cache
def free_names() -> st.SearchStrategy[str]:
    """Free text naming a concept (Finding / Diagnosis / Care without a key)."""
    return st.one_of(texts(), st.sampled_from(TEXT_ONLY_TEXTS))


# --------------------------------------------------------------------------- decimals

SPECIAL_DECIMALS = tuple(
    Decimal(s)
    for s in (
        "1.50",
        "-0.0",
        "0.000",
        "0",
        "0.0",
        "-0.00",
        "-2.5",
        "-1.00",
        "100",
        "1E+2",
        "1.5E-7",
        "0E-5",
        "-0",
        "-0E+2",
        "2.50E+3",
        "0.1",
        "12345678901234567890.0123456789",
    )
)


def _decimal(sign: int, digits: Sequence[int], exponent: int) -> Decimal:
    return Decimal((sign, tuple(digits), exponent))


@cache
def decimals(*, positive: bool = False) -> st.SearchStrategy[Decimal]:
    """Finite decimals with their digits: trailing zeros, signed zeros, exponents -12..+8."""
    raw = st.builds(
        _decimal,
        st.just(0) if positive else st.integers(0, 1),
        st.lists(st.integers(0, 9), min_size=1, max_size=12),
        st.integers(-12, 8),
    )
    s = st.one_of(st.sampled_from(SPECIAL_DECIMALS), raw)
    return s.filter(lambda d: d > 0) if positive else s


# --------------------------------------------------------------------------- dates


@cache
def whens(*, date_only: bool = False) -> st.SearchStrategy[str]:
    """A FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or dateTime (seconds and an offset), as text."""
    return _whens(date_only=date_only)


@st.composite
def _whens(draw: Draw[Any], *, date_only: bool = False) -> str:
    year = draw(st.one_of(st.integers(1990, 2030), st.integers(1, 9999)))
    shape = draw(st.sampled_from(("Y", "YM", "YMD") if date_only else ("Y", "YM", "YMD", "DT")))
    if shape == "Y":
        return f"{year:04d}"
    month = draw(st.integers(1, 12))
    if shape == "YM":
        return f"{year:04d}-{month:02d}"
    day = draw(st.integers(1, calendar.monthrange(year, month)[1]))
    date = f"{year:04d}-{month:02d}-{day:02d}"
    if shape == "YMD":
        return date
    h, m, sec = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    time = f"{h:02d}:{m:02d}:{sec:02d}"
    if draw(st.booleans()):
        digits = draw(st.lists(st.integers(0, 9), min_size=1, max_size=9))
        time += "." + "".join(map(str, digits))
    if draw(st.booleans()):
        offset = "Z"
    else:
        hours = draw(st.integers(0, 14))
        minutes = 0 if hours == 14 else draw(st.sampled_from((0, 30, 45, 59)))
        offset = f"{draw(st.sampled_from('+-'))}{hours:02d}:{minutes:02d}"
    return f"{date}T{time}{offset}"


# --------------------------------------------------------------------------- ids

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."
#: includes ids shaped like those the mapping derives from items (they must not collide)
SAMPLE_IDS = (
    "p1",
    "p1-delivery",
    "p1-anaesthesia",
    "p1-lactation",
    "p1-lactation-1",
    "follow-up",
    "outcome-1",
    "s1-total-hip-T",
    "i1-finding-1",
    "c1-activity-2",
    "dxa-2023-06-14",
    "a",
    "0",
    "-",
    ".",
    "1.50",
    "x" * 64,
)
ids = st.one_of(
    st.sampled_from(SAMPLE_IDS),
    st.text(_ID_CHARS, min_size=1, max_size=10),
    st.text(_ID_CHARS, min_size=60, max_size=64),
)


class _Ids:
    """Hands out ids unique within one case."""

    def __init__(self, draw: Draw[Any]) -> None:
        self.draw = draw
        self.used: set[str] = set()

    def new(self) -> str:
        value: str = self.draw(ids)
        n = 2
        while value in self.used:  # cheaper than a fresh filtered strategy per id
            value = f"{value[:58]}.{n}"
            n += 1
        self.used.add(value)
        return value


def _not_in(taken: set[str]) -> Callable[[str], bool]:
    return lambda value: value not in taken


def _some(draw: Draw[Any], pool: Sequence[str], max_size: int = 2) -> tuple[str, ...]:
    """Some of ``pool``, maybe one twice (the model allows a reference to repeat)."""
    if not pool:
        return ()
    return tuple(draw(st.lists(st.sampled_from(list(pool)), max_size=max_size)))


# --------------------------------------------------------------------------- models


@st.composite
def patients(draw: Draw[Any]) -> Patient:
    system = draw(
        st.one_of(
            st.sampled_from(
                (
                    "http://fhir-plao.example.org/fhir/case-id",
                    "http://fhir-plao.example.org/fhir/item-id",  # the system of our item ids
                    "https://hospital.example.org/mrn",
                    "urn:oid:1.2.3.4.5",
                    "urn:uuid:4e1c7f2a-0d5b-4d0b-9b1e-2f0c3a1b5d6e",
                )
            ),
            st.builds(
                lambda tail: f"https://ex.example/{tail}",
                st.text(
                    st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=8
                ),
            ),
        )
    )
    return Patient(
        identifier_system=system,
        identifier=draw(st.one_of(st.sampled_from(("plao-0001", "a/b", "Ö-123", "/")), texts())),
        birth_date=draw(opt(whens(date_only=True))),
        sex=draw(st.sampled_from(("female", "male", "other", "unknown"))),
    )


@st.composite
def cases(draw: Draw[Any], *, max_items: int = 2) -> Case:
    """A valid case; each list holds 0..``max_items`` items (labs and diagnoses one more)."""
    ident = _Ids(draw)
    when = whens()
    text = texts()
    opt_text = opt(text)
    n = st.integers(0, max_items)

    # -- pregnancies, deliveries, lactations, status
    pregnancies = []
    for _ in range(draw(n)):
        delivery = None
        if draw(st.booleans()):
            delivery = Delivery(
                date=draw(when),
                mode=draw(st.sampled_from(keys("procedure"))),
                anaesthesia=draw(opt(st.sampled_from(keys("procedure")))),
                note=draw(opt_text),
            )
        pregnancies.append(
            Pregnancy(
                id=ident.new(),
                gravida=draw(opt(st.integers(1, 12))),
                delivery=delivery,
                note=draw(opt_text),
            )
        )
    lactations = [
        Lactation(
            pregnancy=pregnancy,
            start=draw(opt(when)),
            stopped=draw(opt(when)),
            stop_reason=draw(opt_text),
        )
        for pregnancy in _some(draw, [p.id for p in pregnancies], max_size=max_items + 1)
    ]
    status_observations = []
    for _ in range(draw(n)):
        question = draw(st.sampled_from(keys("status-question")))
        answers = [
            k
            for k in keys("status-answer")
            if TERMINOLOGY.concept(k).extra.get("question") == question
        ]
        status_observations.append(
            StatusObservation(
                id=ident.new(),
                question=question,
                answer=draw(st.sampled_from(answers)),
                date=draw(when),
                note=draw(opt_text),
            )
        )

    # -- symptoms, findings, vitals
    symptoms = [
        Symptom(
            id=ident.new(),
            concept=draw(st.sampled_from(keys("condition"))),
            severity=draw(opt(st.sampled_from(("mild", "moderate", "severe")))),
            onset=draw(opt(when)),
            resolved=draw(opt(when)),
            note=draw(opt_text),
        )
        for _ in range(draw(n))
    ]
    findings = []
    for _ in range(draw(n)):
        concept, name = draw(named(("condition", "finding")))
        findings.append(
            Finding(
                id=ident.new(),
                category=draw(st.sampled_from(("exam", "social-history", "history"))),
                concept=concept,
                text=name,
                value=draw(text),
                date=draw(opt(when)),
            )
        )
    vitals = []
    for _ in range(draw(n)):
        kind = draw(st.sampled_from(keys("vital")))
        vitals.append(
            Vital(
                id=ident.new(),
                kind=kind,
                value=draw(decimals(positive=True)),
                unit=draw(st.sampled_from(TERMINOLOGY.concept(kind).units)),
                date=draw(when),
            )
        )

    # -- labs
    lab_panels = [
        LabPanel(
            id=ident.new(),
            concept=draw(st.sampled_from(keys("lab-panel", "lab"))),
            date=draw(when),
            conclusion=draw(opt_text),
        )
        for _ in range(draw(n))
    ]
    labs = [
        draw(lab_results(ident.new(), tuple(p.id for p in lab_panels)))
        for _ in range(draw(st.integers(0, max_items + 1)))
    ]

    # -- DXA and imaging
    dxa_scans = [
        DxaScan(
            id=ident.new(),
            date=draw(when),
            scores=draw(dxa_scores()),
            conclusion=draw(opt_text),
        )
        for _ in range(draw(n))
    ]
    imaging = [
        ImagingStudy(
            id=ident.new(),
            concepts=tuple(
                draw(
                    st.lists(st.sampled_from(keys("imaging")), min_size=1, max_size=3, unique=True)
                )
            ),
            date=draw(when),
            findings=tuple(draw(st.lists(text, max_size=3))),
            conclusion=draw(opt_text),
        )
        for _ in range(draw(n))
    ]
    study_ids = [s.id for s in imaging]

    # -- conditions
    fractures: list[Fracture] = []
    for _ in range(draw(n)):
        site = draw(st.sampled_from(keys("vertebra", "fracture-site")))
        taken = {f.onset for f in fractures if f.site == site}
        extra: dict[str, Any] = {}
        if draw(st.booleans()):  # else the default, vertebral-compression-fracture
            extra["concept"] = draw(st.sampled_from(keys("condition")))
        fractures.append(
            Fracture(
                id=ident.new(),
                site=site,
                onset=draw(when.filter(_not_in(taken))),
                recorded=draw(opt(when)),
                healed=draw(opt(when)),
                evidence=_some(draw, study_ids),
                note=draw(opt_text),
                **extra,
            )
        )
    diagnoses = []
    for _ in range(draw(st.integers(0, max_items + 1))):
        concept, name = draw(named(("condition",)))
        verification = draw(
            st.sampled_from(("confirmed", "provisional", "differential", "refuted"))
        )
        clinical = None
        if verification != "refuted":
            clinical = draw(
                st.sampled_from(
                    ("active", "recurrence", "relapse", "inactive", "remission", "resolved")
                )
            )
        diagnoses.append(
            Diagnosis(
                id=ident.new(),
                concept=concept,
                text=name,
                verification=verification,
                clinical_status=clinical,
                onset=draw(opt(when)),
                recorded=draw(opt(when)),
                abatement=draw(opt(when)),
                evidence=_some(draw, study_ids),
                note=draw(opt_text),
            )
        )
    condition_ids = tuple([d.id for d in diagnoses] + [f.id for f in fractures])

    # -- treatment and care
    medications = [draw(medications_(ident.new(), condition_ids)) for _ in range(draw(n))]
    care = []
    for _ in range(draw(n)):
        kind = draw(st.sampled_from(("procedure", "plan")))
        concept, name = draw(named(("procedure",)))
        statuses = ["not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped"]
        if kind == "procedure":
            statuses.remove("scheduled")  # the model's rule: a procedure is never scheduled
        care.append(
            Care(
                id=ident.new(),
                kind=kind,
                concept=concept,
                text=name,
                detail=draw(opt_text),
                start=draw(opt(when)),
                end=draw(opt(when)),
                status=draw(st.sampled_from(statuses)),
            )
        )
    follow_up = None
    if draw(st.booleans()):
        # may be empty: the model then holds None, its one spelling of "no follow-up"
        follow_up = FollowUp(
            phases=tuple(draw(st.lists(follow_up_phases(), max_size=max_items))),
            outcomes=tuple(draw(st.lists(outcomes(), max_size=max_items))),
        )

    return Case(
        comment=draw(opt_text),
        patient=draw(patients()),
        pregnancies=tuple(pregnancies),
        lactations=tuple(lactations),
        status_observations=tuple(status_observations),
        symptoms=tuple(symptoms),
        findings=tuple(findings),
        vitals=tuple(vitals),
        lab_panels=tuple(lab_panels),
        labs=tuple(labs),
        dxa_scans=tuple(dxa_scans),
        imaging=tuple(imaging),
        fractures=tuple(fractures),
        diagnoses=tuple(diagnoses),
        medications=tuple(medications),
        care=tuple(care),
        follow_up=follow_up,
    )


@st.composite
def named(draw: Draw[Any], kinds: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(concept, text) for a ``_Named`` item: a key, a coded key with a text override, or text."""
    how = draw(st.sampled_from(("key", "key+text", "text")))
    if how == "text":
        return None, draw(free_names())
    key = draw(st.sampled_from(keys(*kinds)))
    if how == "key+text" and coded(key):
        # an override; one equal to the table's text is dropped by the model, which is fine
        return key, draw(st.one_of(texts(), st.just(TERMINOLOGY.concept(key).text)))
    return key, None


_GENERIC_UNITS = ("1", "%", "mg", "ug", "[IU]", "mL", "g", "{titer}", "mmol/L", "{tbl}")


def _units_of(key: str) -> tuple[str, ...]:
    return TERMINOLOGY.concept(key).units or _GENERIC_UNITS


@st.composite
def lab_results(draw: Draw[Any], lab_id: str, panel_ids: tuple[str, ...]) -> LabResult:
    """A lab: a figure with its unit, a text, or neither; a unit also when a range bound has one."""
    test = draw(st.sampled_from(keys("lab")))
    shape = draw(st.sampled_from(("value", "value_text", "none")))
    value = draw(decimals()) if shape == "value" else None
    value_text = draw(texts()) if shape == "value_text" else None
    rr = None
    if draw(st.booleans()):
        low, high = draw(opt(decimals())), draw(opt(decimals()))
        if low is not None and high is not None and low > high:
            low, high = high, low
        rr_text = draw(opt(texts()))
        if low is None and high is None and rr_text is None:
            rr_text = draw(texts())
        rr = ReferenceRange(low=low, high=high, text=rr_text)
    bounded = rr is not None and (rr.low is not None or rr.high is not None)
    unit = draw(st.sampled_from(_units_of(test))) if value is not None or bounded else None
    return LabResult(
        id=lab_id,
        test=test,
        panel=draw(opt(st.sampled_from(panel_ids))) if panel_ids else None,
        date=draw(whens()),
        value=value,
        value_text=value_text,
        unit=unit,
        reference_range=rr,
        interpretation=draw(opt(st.sampled_from(("H", "L", "N", "A", "HH", "LL")))),
        note=draw(opt(texts())),
    )


@st.composite
def dxa_scores(draw: Draw[Any]) -> tuple[DxaScore, ...]:
    """1-3 scores, each (site, kind) once, of the kinds each site supports."""
    pairs = [
        (site, kind)
        for site in keys("dxa-site")
        for kind in TERMINOLOGY.concept(site).extra.get("scores", {})
    ]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3, unique=True))
    scores = []
    for site, kind in chosen:
        units = TERMINOLOGY.concept(TERMINOLOGY.dxa_score_key(site, kind)).units
        if kind == "BMD":
            value, unit = draw(decimals(positive=True)), draw(st.sampled_from(units))
        else:
            value, unit = draw(decimals()), draw(opt(st.sampled_from(units)))
        scores.append(DxaScore(site=site, kind=kind, value=value, unit=unit))
    return tuple(scores)


@st.composite
def medications_(draw: Draw[Any], med_id: str, condition_ids: tuple[str, ...]) -> Medication:
    dose = draw(opt(decimals(positive=True)))
    period = draw(opt(decimals(positive=True)))
    start, end = draw(opt(whens())), draw(opt(whens()))
    if start is not None and end is not None and _before(end, start):
        start, end = end, start
    return Medication(
        id=med_id,
        drug=draw(st.sampled_from(keys("medication"))),
        dose=dose,
        dose_unit=draw(st.sampled_from(_GENERIC_UNITS)) if dose is not None else None,
        frequency=draw(opt(st.integers(1, 6))) if period is not None else None,
        period=period,
        period_unit=None if period is None else draw(st.sampled_from(("h", "d", "wk", "mo", "a"))),
        route=draw(opt(st.sampled_from(keys("route")))),
        start=start,
        end=end,
        status=draw(st.sampled_from(("active", "completed", "stopped", "on-hold", "intended"))),
        reason=_some(draw, condition_ids),
        note=draw(opt(texts())),
    )


@cache
def follow_up_phases() -> st.SearchStrategy[FollowUpPhase]:
    statuses = ("not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped")
    return st.builds(
        FollowUpPhase,
        every=st.integers(1, 24),
        unit=st.sampled_from(("d", "wk", "mo", "a")),
        start=whens(),
        end=whens(),
        status=st.sampled_from(statuses),
        description=opt(texts()),
    )


@cache
def outcomes() -> st.SearchStrategy[Outcome]:
    return st.builds(
        Outcome,
        date=whens(),
        summary=texts(),
        findings=st.lists(texts(), max_size=3).map(tuple),
    )
