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
def whens(*, fhir_valid: bool = False, date_only: bool = False) -> st.SearchStrategy[str]:
    return _whens(fhir_valid=fhir_valid, date_only=date_only)


@st.composite
def _whens(draw: Draw[Any], *, fhir_valid: bool = False, date_only: bool = False) -> str:
    """A FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or dateTime with an offset, precision kept."""
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
    time = f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"
    if fhir_valid or draw(st.booleans()):
        time += f":{draw(st.integers(0, 59)):02d}"
        if draw(st.booleans()):
            digits = draw(st.integers(1, 9))
            time += "." + "".join(
                str(d) for d in draw(st.lists(st.integers(0, 9), min_size=digits, max_size=digits))
            )
    if draw(st.booleans()):
        offset = "Z"
    else:
        hours = draw(st.integers(0, 14))
        minutes = 0 if (fhir_valid and hours == 14) else draw(st.sampled_from((0, 30, 45, 59)))
        offset = f"{draw(st.sampled_from('+-'))}{hours:02d}:{minutes:02d}"
    return f"{date}T{time}{offset}"


# --------------------------------------------------------------------------- ids

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."
SAMPLE_IDS = (
    "p1",
    "pregnancy-1",
    "lab-1",
    "dxa.2023-06",
    "a",
    "A",
    "0",
    "-",
    ".",
    "1.50",
    "x" * 64,
)
_DXA_SITES = "|".join(re.escape(k) for k in TERMINOLOGY.keys_of("dxa-site"))
_DERIVED = re.compile(
    rf"^follow-up$|-(delivery|anaesthesia|lactation|finding-\d+)$|-({_DXA_SITES})-(T|Z|BMD)$"
)
ids = st.one_of(
    st.sampled_from(SAMPLE_IDS),
    st.text(_ID_CHARS, min_size=1, max_size=10),
    st.text(_ID_CHARS, min_size=60, max_size=64),
).filter(lambda s: not _DERIVED.search(s))


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


def _subset(
    draw: Draw[Any], pool: Sequence[str], max_size: int = 2, unique: bool = False
) -> tuple[str, ...]:
    """Some of ``pool`` (a reference may name one item twice: the model allows it)."""
    if not pool:
        return ()
    return tuple(draw(st.lists(st.sampled_from(list(pool)), max_size=max_size, unique=unique)))


# --------------------------------------------------------------------------- models


@st.composite
def patients(draw: Draw[Any], *, fhir_valid: bool = False) -> Patient:
    system = draw(
        st.one_of(
            st.sampled_from(
                (
                    "http://fhir-plao.example.org/fhir/case-id",
                    "https://hospital.example.org/mrn",
                    "urn:oid:1.2.3.4.5",
                    "http://fhir-plao.example.org/fhir/item-id",  # the system of our item ids
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
        identifier=draw(
            st.one_of(st.sampled_from(("plao-0001", "a/b", "Ö-123")), texts(fhir_valid=fhir_valid))
        ),
        # FHIR's birthDate is a date: a time there is not valid FHIR (see NOT_FHIR in the tests)
        birth_date=draw(opt(whens(fhir_valid=fhir_valid, date_only=fhir_valid))),
        sex=draw(st.sampled_from(("female", "male", "other", "unknown"))),
    )


@st.composite
def cases(draw: Draw[Any], *, fhir_valid: bool = False, max_items: int = 2) -> Case:
    """A valid case; each list holds 0..``max_items`` items."""
    fv = fhir_valid
    ident = _Ids(draw)
    when = whens(fhir_valid=fv)
    text = texts(fhir_valid=fv)
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
    lactations = []
    for pregnancy in _subset(draw, [p.id for p in pregnancies], unique=True):
        which = draw(st.sampled_from(("both", "start", "stopped")))
        lactations.append(
            Lactation(
                pregnancy=pregnancy,
                start=draw(when) if which != "stopped" else None,
                stopped=draw(when) if which != "start" else None,
                stop_reason=draw(opt_text),
            )
        )
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
        concept, name = draw(named(("condition", "finding"), fhir_valid=fv))
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
        draw(lab_results(ident.new(), [p.id for p in lab_panels], fhir_valid=fv))
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
    imaging = []
    for _ in range(draw(n)):
        pool = draw(st.sampled_from(("coded", "text-only")))
        choices = [k for k in keys("imaging") if coded(k) == (pool == "coded")]
        imaging.append(
            ImagingStudy(
                id=ident.new(),
                concepts=tuple(
                    draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2, unique=True))
                ),
                date=draw(when),
                findings=tuple(draw(st.lists(text, max_size=3))),
                conclusion=draw(opt_text),
            )
        )
    study_ids = [s.id for s in imaging]

    # -- conditions
    fractures: list[Fracture] = []
    sites = [k for k in keys("vertebra", "fracture-site") if k not in BAD_FRACTURE_SITES]
    for _ in range(draw(n)):
        site = draw(st.sampled_from(sites))
        taken = {f.onset for f in fractures if f.site == site}
        extra: dict[str, Any] = {}
        if draw(st.booleans()):
            extra["concept"] = draw(st.sampled_from(keys("condition")))
        fractures.append(
            Fracture(
                id=ident.new(),
                site=site,
                onset=draw(when.filter(_not_in(taken))),
                recorded=draw(opt(when)),
                healed=draw(opt(when)),
                evidence=_subset(draw, study_ids),
                note=draw(opt_text),
                **extra,
            )
        )
    diagnoses = []
    for _ in range(draw(st.integers(0, max_items + 1))):
        concept, name = draw(named(("condition",), fhir_valid=fv))
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
                evidence=_subset(draw, study_ids),
                note=draw(opt_text),
            )
        )
    condition_ids = [d.id for d in diagnoses] + [f.id for f in fractures]

    # -- treatment and care
    medications = [
        draw(medications_(ident.new(), condition_ids, fhir_valid=fv)) for _ in range(draw(n))
    ]
    care = []
    for _ in range(draw(n)):
        kind = draw(st.sampled_from(("procedure", "plan")))
        concept, name = draw(named(("procedure",), fhir_valid=fv))
        statuses = ["not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped"]
        if kind == "procedure":
            statuses.remove("scheduled")
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
        phases = draw(st.lists(follow_up_phases(fhir_valid=fv), max_size=max_items))
        outcomes = draw(st.lists(outcomes_(fhir_valid=fv), max_size=max_items))
        if phases or outcomes:
            follow_up = FollowUp(phases=tuple(phases), outcomes=tuple(outcomes))

    return Case(
        comment=draw(opt_text),
        patient=draw(patients(fhir_valid=fv)),
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
def named(
    draw: Draw[Any], kinds: tuple[str, ...], *, fhir_valid: bool = False
) -> tuple[str | None, str | None]:
    """(concept, text) for a ``_Named`` item: a key, a coded key with a text override, or text."""
    how = draw(st.sampled_from(("key", "key+text", "text")))
    if how == "text":
        return None, draw(free_names(fhir_valid=fhir_valid))
    key = draw(st.sampled_from(keys(*kinds)))
    if how == "key+text" and coded(key):
        # an override; one equal to the table's text is dropped by the model, which is fine
        return key, draw(
            st.one_of(texts(fhir_valid=fhir_valid), st.just(TERMINOLOGY.concept(key).text))
        )
    return key, None


_GENERIC_UNITS = ("1", "%", "mg", "ug", "[IU]", "mL", "g", "{titer}", "mmol/L", "{tbl}")


def _units_of(key: str) -> tuple[str, ...]:
    return TERMINOLOGY.concept(key).units or _GENERIC_UNITS


@st.composite
def lab_results(
    draw: Draw[Any], lab_id: str, panel_ids: Sequence[str], *, fhir_valid: bool = False
) -> LabResult:
    test = draw(st.sampled_from(keys("lab")))
    opt_text = opt(texts(fhir_valid=fhir_valid))
    shape = draw(st.sampled_from(("value", "value_text", "none")))
    value = draw(decimals()) if shape == "value" else None
    value_text = draw(texts(fhir_valid=fhir_valid)) if shape == "value_text" else None
    rr = None
    if draw(st.booleans()):
        low, high = draw(opt(decimals())), draw(opt(decimals()))
        if low is not None and high is not None and low > high:
            low, high = high, low
        rr_text = draw(opt_text)
        if low is None and high is None and rr_text is None:
            rr_text = draw(texts(fhir_valid=fhir_valid))
        rr = ReferenceRange(low=low, high=high, text=rr_text)
    has_bound = rr is not None and (rr.low is not None or rr.high is not None)
    unit = draw(st.sampled_from(_units_of(test))) if value is not None or has_bound else None
    return LabResult(
        id=lab_id,
        test=test,
        panel=draw(opt(st.sampled_from(list(panel_ids)))) if panel_ids else None,
        date=draw(whens(fhir_valid=fhir_valid)),
        value=value,
        value_text=value_text,
        unit=unit,
        reference_range=rr,
        interpretation=draw(opt(st.sampled_from(("H", "L", "N", "A", "HH", "LL")))),
        note=draw(opt_text),
    )


@st.composite
def dxa_scores(draw: Draw[Any]) -> tuple[DxaScore, ...]:
    pairs = [
        (site, kind)
        for site in keys("dxa-site")
        for kind in TERMINOLOGY.concept(site).extra.get("scores", {})
    ]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3, unique=True))
    scores = []
    for site, kind in chosen:
        score_key = TERMINOLOGY.dxa_score_key(site, kind)
        units = TERMINOLOGY.concept(score_key).units
        if kind == "BMD":
            value, unit = draw(decimals(positive=True)), draw(st.sampled_from(units))
        else:
            value, unit = draw(decimals()), draw(opt(st.sampled_from(units)))
        scores.append(DxaScore(site=site, kind=kind, value=value, unit=unit))
    return tuple(scores)


@st.composite
def medications_(
    draw: Draw[Any], med_id: str, condition_ids: Sequence[str], *, fhir_valid: bool = False
) -> Medication:
    dose = draw(opt(decimals(positive=True)))
    period = draw(opt(decimals(positive=True)))
    when = whens(fhir_valid=fhir_valid)
    start, end = draw(opt(when)), draw(opt(when))
    if start is not None and end is not None and _before(end, start):
        start, end = end, start
    return Medication(
        id=med_id,
        drug=draw(st.sampled_from(keys("medication"))),
        dose=dose,
        dose_unit=draw(st.sampled_from(_GENERIC_UNITS)) if dose is not None else None,
        frequency=draw(opt(st.integers(1, 6))) if period is not None else None,
        period=period,
        period_unit=draw(st.sampled_from(("h", "d", "wk", "mo", "a")))
        if period is not None
        else None,
        route=draw(opt(st.sampled_from(keys("route")))),
        start=start,
        end=end,
        status=draw(st.sampled_from(("active", "completed", "stopped", "on-hold", "intended"))),
        reason=_subset(draw, condition_ids),
        note=draw(opt(texts(fhir_valid=fhir_valid))),
    )


def follow_up_phases(*, fhir_valid: bool = False) -> st.SearchStrategy[FollowUpPhase]:
    when = whens(fhir_valid=fhir_valid)
    return st.builds(
        FollowUpPhase,
        every=st.integers(1, 24),
        unit=st.sampled_from(("d", "wk", "mo", "a")),
        start=when,
        end=when,
        status=st.sampled_from(
            ("not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped")
        ),
        description=opt(texts(fhir_valid=fhir_valid)),
    )


def outcomes_(*, fhir_valid: bool = False) -> st.SearchStrategy[Outcome]:
    return st.builds(
        Outcome,
        date=whens(fhir_valid=fhir_valid),
        summary=texts(fhir_valid=fhir_valid),
        findings=st.lists(texts(fhir_valid=fhir_valid), max_size=3).map(tuple),
    )
