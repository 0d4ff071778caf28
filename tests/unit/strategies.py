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

from functools import cache
from typing import Any

from hypothesis import strategies as st

from fhir_plao._types import before as _before
from fhir_plao.case import (
    Care,
    Case,
    Delivery,
    Diagnosis,
    DxaScan,
    DxaScore,
    Encounter,
    Finding,
    FollowUp,
    FollowUpPhase,
    Fracture,
    ImagingSeries,
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
)
from fhir_plao.coded import Concept
from fhir_plao.terminology import TERMINOLOGY
from tests.unit.strategies_base import (
    Draw,
    Ids,
    coded,
    decimals,
    free_names,
    keys,
    not_in,
    opt,
    some,
    texts,
    whens,
)
from tests.unit.strategies_coded import (
    INSTANTS,
    coded_observations,
    codings,
    condition_categories,
    diagnosis_keys,
    foreign_concepts,
    fracture_keys,
    lab_categories,
    observation_categories,
    periods,
    recognisable,
    report_categories,
    source_codes,
    with_extra,
)

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
        identifier_system=draw(st.one_of(st.just(system), st.none())),
        identifier=draw(st.one_of(st.sampled_from(("plao-0001", "a/b", "Ö-123", "/")), texts())),
        birth_date=draw(opt(whens(date_only=True))),
        sex=draw(st.sampled_from(("female", "male", "other", "unknown"))),
    )


@st.composite
def cases(draw: Draw[Any], *, max_items: int = 2) -> Case:
    """A valid case; each list holds 0..``max_items`` items (labs and diagnoses one more)."""
    ident = Ids(draw)
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
            **dict(zip(("start", "stopped"), ordered(draw, opt(when)), strict=True)),
            stop_reason=draw(opt_text),
        )
        for pregnancy in some(draw, [p.id for p in pregnancies], max_size=max_items + 1)
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
    lab_panels = []
    for _ in range(draw(n)):
        panel_key, panel_code = draw(source_codes(("lab-panel", "lab"), keys("lab-panel", "lab")))
        lab_panels.append(
            LabPanel(
                id=ident.new(),
                concept=panel_key,
                code=panel_code,
                status=draw(st.sampled_from(("final", "amended", "partial", "preliminary"))),
                category=draw(report_categories(lab=True)),
                date=draw(opt(when)),
                issued=draw(opt(st.sampled_from(INSTANTS))),
                conclusion=draw(opt_text),
            )
        )
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
    imaging = []
    for _ in range(draw(n)):
        by_source = draw(st.booleans())
        imaging.append(
            ImagingStudy(
                id=ident.new(),
                concepts=()
                if by_source
                else tuple(
                    draw(
                        st.lists(
                            st.sampled_from(keys("imaging")), min_size=1, max_size=3, unique=True
                        )
                    )
                ),
                code=draw(foreign_concepts()) if by_source else None,
                status=draw(st.sampled_from(("final", "amended", "corrected"))),
                category=draw(report_categories(lab=False)),
                date=draw(opt(when)),
                issued=draw(opt(st.sampled_from(INSTANTS))),
                series=tuple(
                    draw(
                        st.lists(
                            st.builds(
                                ImagingSeries,
                                modality=st.sampled_from(keys("modality")),
                                description=text,
                            ),
                            max_size=2,
                        )
                    )
                ),
                findings=tuple(draw(st.lists(text, max_size=3))),
                conclusion=draw(opt_text),
            )
        )
    study_ids = [s.id for s in imaging]

    # -- conditions
    fractures: list[Fracture] = []
    for _ in range(draw(n)):
        site: str | None = draw(st.sampled_from(keys("vertebra", "fracture-site")))
        taken = {f.onset for f in fractures if f.site == site}
        extra: dict[str, Any] = {}
        how = draw(st.sampled_from(("ours", "concept", "source code", "coded fracture")))
        if how == "concept":  # else the default, vertebral-compression-fracture
            extra["concept"] = draw(st.sampled_from(keys("condition")))
        elif how == "source code":
            extra["code"] = draw(foreign_concepts())
        elif how == "coded fracture":  # known as a fracture by its code, maybe of no site
            extra["code"] = draw(with_extra(draw(st.sampled_from(fracture_keys()))))
            site = draw(opt(st.just(site)))
        if site is not None and draw(st.booleans()) and recognisable_site(site):
            extra["body_site"] = draw(with_extra(site))
        if draw(st.booleans()):
            extra["category"] = draw(condition_categories())
            extra["verification"] = draw(
                st.sampled_from(("confirmed", "provisional", "differential", "unconfirmed", None))
            )
        fractures.append(
            Fracture(
                id=ident.new(),
                site=site,
                onset=draw(opt(when.filter(not_in(taken)))),
                recorded=draw(opt(when)),
                healed=draw(opt(when)),
                evidence=some(draw, study_ids),
                note=draw(opt_text),
                **extra,
            )
        )
    diagnoses = []
    for _ in range(draw(st.integers(0, max_items + 1))):
        concept, name = draw(named(("condition",), diagnosis_keys()))
        code = None
        if draw(st.booleans()):  # coded by the source
            concept, code = draw(source_codes(("condition",), recognisable_diagnoses()))
            name = None
        verification = draw(
            st.sampled_from(
                (
                    "confirmed",
                    "provisional",
                    "differential",
                    "refuted",
                    "unconfirmed",
                    "entered-in-error",
                    None,
                )
            )
        )
        clinical = None
        if verification not in ("refuted", "entered-in-error"):
            clinical = draw(
                opt(
                    st.sampled_from(
                        ("active", "recurrence", "relapse", "inactive", "remission", "resolved")
                    )
                )
            )
        diagnoses.append(
            Diagnosis(
                id=ident.new(),
                concept=concept,
                text=name,
                code=code,
                category=draw(condition_categories()),
                verification=verification,
                clinical_status=clinical,
                severity=draw(opt(foreign_concepts())),
                onset=draw(opt(when)),
                recorded=draw(opt(when)),
                abatement=draw(opt(when)),
                evidence=some(draw, study_ids),
                note=draw(opt_text),
            )
        )
    condition_ids = tuple(
        [d.id for d in diagnoses] + [f.id for f in fractures] + [s.id for s in symptoms]
    )

    # -- treatment and care
    medications = [draw(medications_(ident.new(), condition_ids)) for _ in range(draw(n))]
    care = []
    for _ in range(draw(n)):
        kind = draw(st.sampled_from(("procedure", "plan")))
        concept, name = draw(named(("procedure",)))
        code = None
        if draw(st.booleans()):
            concept, code = draw(source_codes(("procedure",)))
            name = None
        statuses = ["not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped"]
        procedure: dict[str, Any] = {}
        if kind == "procedure":
            statuses.remove("scheduled")  # the model's rule: a procedure is never scheduled
            statuses += ["not-done", "unknown", "entered-in-error"]
            procedure = {
                "body_site": tuple(draw(st.lists(foreign_concepts(), max_size=2))),
                "reason": some(draw, condition_ids),
                "reason_code": tuple(draw(st.lists(foreign_concepts(), max_size=2))),
            }
        timed = kind == "procedure" and draw(st.booleans())
        care.append(
            Care(
                id=ident.new(),
                kind=kind,
                concept=concept,
                text=name,
                code=code,
                detail=draw(opt_text),
                date=draw(when) if timed else None,
                **dict(
                    zip(
                        ("start", "end"),
                        (None, None) if timed else ordered(draw, opt(when)),
                        strict=True,
                    )
                ),
                status=draw(st.sampled_from(statuses)),
                **procedure,
            )
        )
    encounters = [draw(encounter_items(ident.new(), condition_ids)) for _ in range(draw(n))]
    # coded observations: their ids first, so that they may group one another
    observation_ids = [ident.new() for _ in range(draw(st.integers(0, max_items + 2)))]
    member_pool = tuple(observation_ids + [x.id for x in labs] + [v.id for v in vitals])
    report_pool = tuple(
        [p.id for p in lab_panels] + [s.id for s in imaging] + [d.id for d in dxa_scans]
    )
    observations = [
        draw(coded_observations(oid, tuple(m for m in member_pool if m != oid), report_pool))
        for oid in observation_ids
    ]
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
        observations=tuple(observations),
        encounters=tuple(encounters),
        follow_up=follow_up,
    )


@st.composite
def named(
    draw: Draw[Any], kinds: tuple[str, ...], pool: tuple[str, ...] | None = None
) -> tuple[str | None, str | None]:
    """(concept, text) for a ``_Named`` item: a key, a coded key with a text override, or text."""
    how = draw(st.sampled_from(("key", "key+text", "text")))
    if how == "text":
        return None, draw(free_names())
    key = draw(st.sampled_from(pool or keys(*kinds)))
    if how == "key+text" and coded(key):
        # an override; one equal to the table's text is dropped by the model, which is fine
        return key, draw(st.one_of(texts(), st.just(TERMINOLOGY.concept(key).text)))
    return key, None


_GENERIC_UNITS = ("1", "%", "mg", "ug", "[IU]", "mL", "g", "{titer}", "mmol/L", "{tbl}")
#: what a dose is given in (a mass, an amount, a volume, a count; a source's non-UCUM unit)
_DOSE_UNITS = ("1", "mg", "ug", "[IU]", "[iU]", "mL", "g", "mmol", "{tbl}", "tablet")


def _units_of(key: str) -> tuple[str, ...]:
    return TERMINOLOGY.concept(key).units or _GENERIC_UNITS


@st.composite
def lab_results(draw: Draw[Any], lab_id: str, panel_ids: tuple[str, ...]) -> LabResult:
    """A lab: a figure with its unit, a text, or neither; a unit also when a range bound has one."""
    test, code = draw(source_codes(("lab",), keys("lab")))
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
    units = _units_of(test) if test is not None else _GENERIC_UNITS
    unit = draw(st.sampled_from(units)) if value is not None or bounded else None
    return LabResult(
        id=lab_id,
        test=test,
        code=code,
        status=draw(st.sampled_from(("final", "amended", "corrected", "preliminary"))),
        category=draw(lab_categories()),
        panel=draw(opt(st.sampled_from(panel_ids))) if panel_ids else None,
        date=draw(opt(whens())),
        issued=draw(opt(st.sampled_from(INSTANTS))),
        unit_text=draw(opt(st.sampled_from(("mg/dl", "MG/DL", "units")))) if unit else None,
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
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=0, max_size=3, unique=True))
    scores = []
    for site, kind in chosen:
        score_key = TERMINOLOGY.dxa_score_key(site, kind)
        units = TERMINOLOGY.concept(score_key).units
        if kind == "BMD":
            value, unit = draw(decimals(positive=True)), draw(st.sampled_from(units))
        else:
            value, unit = draw(decimals()), draw(opt(st.sampled_from(units)))
        source: dict[str, Any] = {}
        how = draw(st.sampled_from(("ours", "source", "site from code", "source body site")))
        if how != "ours":
            source = {
                "unit_text": draw(opt(st.sampled_from(("T-Score", "Z-Score", "g/cm²")))),
                "status": draw(st.sampled_from(("final", "amended"))),
                "category": draw(observation_categories()),
                "issued": draw(opt(st.sampled_from(INSTANTS))),
                "code": draw(opt(with_extra(score_key))),
            }
        if how == "site from code" and site in _sites_named_by_code().get(score_key, ()):
            source["site_from_code"] = True
        elif how == "source body site" and recognisable_site(site, "dxa-site"):
            source["body_site"] = draw(with_extra(site))
        scores.append(DxaScore(site=site, kind=kind, value=value, unit=unit, **source))
    return tuple(scores)


@cache
def _sites_named_by_code() -> dict[str, tuple[str, ...]]:
    """Score key -> the one site whose scores use it (a score without bodySite gets it)."""
    by_key: dict[str, list[str]] = {}
    for site in keys("dxa-site"):
        for key in TERMINOLOGY.concept(site).extra.get("scores", {}).values():
            by_key.setdefault(key, []).append(site)
    return {k: tuple(v) for k, v in by_key.items() if len(v) == 1}


@cache
def recognisable_site(site: str, *kinds: str) -> bool:
    kinds = kinds or ("vertebra", "fracture-site")
    return (
        bool(TERMINOLOGY.concept(site).codings) and Concept.of_key(site).recognised(*kinds) == site
    )


@cache
def recognisable_diagnoses() -> tuple[str, ...]:
    return tuple(k for k in recognisable("condition") if k in diagnosis_keys())


@st.composite
def encounter_items(draw: Draw[Any], eid: str, condition_ids: tuple[str, ...]) -> Encounter:
    by_key = draw(st.booleans())
    return Encounter(
        id=eid,
        status=draw(st.sampled_from(("planned", "in-progress", "finished", "cancelled"))),
        kind=draw(st.sampled_from(keys("encounter-class"))) if by_key else None,
        class_code=None if by_key else draw(codings()),
        type=tuple(draw(st.lists(foreign_concepts(), max_size=2))),
        period=draw(opt(periods())),
        reason=some(draw, condition_ids),
        reason_code=tuple(draw(st.lists(foreign_concepts(), max_size=2))),
        discharge=draw(opt(foreign_concepts())),
    )


def _in_order(start: Any, end: Any) -> tuple[Any, Any]:
    return (end, start) if _before(end, start) else (start, end)


def ordered(draw: Draw[Any], strategy: st.SearchStrategy[Any]) -> tuple[Any, Any]:
    """Two draws, the later second (FHIR per-1: a period does not end before it starts)."""
    start, end = draw(strategy), draw(strategy)
    if start is not None and end is not None and _before(end, start):
        start, end = end, start
    return start, end


@st.composite
def medications_(draw: Draw[Any], med_id: str, condition_ids: tuple[str, ...]) -> Medication:
    dose = draw(opt(decimals(positive=True)))
    period = draw(opt(decimals(positive=True)))
    start, end = ordered(draw, opt(whens()))
    drug, code = draw(source_codes(("medication",), keys("medication")))
    record = draw(st.sampled_from(("statement", "request")))
    statuses = (
        ("active", "completed", "stopped", "on-hold", "intended", "unknown", "not-taken")
        if record == "statement"
        else ("active", "on-hold", "cancelled", "completed", "stopped", "draft", "unknown")
    )
    dose_unit = draw(opt(st.sampled_from(_DOSE_UNITS))) if dose is not None else None
    by_source_route = draw(st.booleans())
    return Medication(
        id=med_id,
        drug=drug,
        code=code,
        record=record,
        intent=draw(st.sampled_from(("order", "plan", "proposal")))
        if record == "request"
        else None,
        authored=draw(opt(whens())) if record == "request" else None,
        dose=dose,
        dose_unit=dose_unit,
        dose_unit_text=draw(opt(st.sampled_from(("tablet", "MG")))) if dose_unit else None,
        frequency=draw(opt(st.integers(1, 6))) if period is not None else None,
        period=period,
        period_unit=None
        if period is None
        else draw(st.sampled_from(("s", "min", "h", "d", "wk", "mo", "a"))),
        route=None if by_source_route else draw(opt(st.sampled_from(keys("route")))),
        route_code=draw(opt(foreign_concepts())) if by_source_route else None,
        as_needed=draw(opt(st.booleans())),
        dosage_text=draw(opt(texts())),
        start=start,
        end=end,
        status=draw(st.sampled_from(statuses)),
        reason=some(draw, condition_ids),
        reason_code=tuple(draw(st.lists(foreign_concepts(), max_size=2))),
        note=draw(opt(texts())),
    )


@cache
def follow_up_phases() -> st.SearchStrategy[FollowUpPhase]:
    statuses = ("not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped")
    periods = st.tuples(whens(), whens()).map(lambda pair: _in_order(*pair))
    return st.builds(
        lambda every, unit, period, status, description: FollowUpPhase(
            every=every,
            unit=unit,
            start=period[0],
            end=period[1],
            status=status,
            description=description,
        ),
        st.integers(1, 24),
        st.sampled_from(("d", "wk", "mo", "a")),
        periods,
        st.sampled_from(statuses),
        opt(texts()),
    )


@cache
def outcomes() -> st.SearchStrategy[Outcome]:
    return st.builds(
        Outcome,
        date=whens(),
        summary=texts(),
        findings=st.lists(texts(), max_size=3).map(tuple),
    )
