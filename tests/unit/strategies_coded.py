"""Hypothesis strategies for what other systems write: their codings, quantities and values of
every R4 type, and the items that keep them (coded observations, source-coded labs, reports,
conditions, medications, care and encounters).

Foreign codes come from systems the code table does not hold, so the table recognises a concept
only where a strategy puts one of its codings on purpose (a key's codings followed by the
source's own). A coded observation is drawn so that no dedicated section would take it back
(it carries a foreign coding, and never the lone category "laboratory"): the same FHIR could
otherwise be spelled two ways in the case, and the reader takes the dedicated one.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import strategies as st

from fhir_plao._types import before
from fhir_plao.coded import (
    CodedObservation,
    Coding,
    Component,
    Concept,
    ObservedRange,
    Period,
    Quantity,
    Range,
    Ratio,
    Value,
)
from fhir_plao.terminology import TERMINOLOGY
from tests.unit.strategies_base import Draw, decimals, keys, opt, texts, whens

FOREIGN_SYSTEMS = (
    "http://acme.example/codes",
    "urn:oid:1.2.3.4.99",
    "http://hospital.example.org/fhir/CodeSystem/local-lab",
)
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
INSTANTS = ("2023-05-10T09:30:00Z", "2023-05-10T09:30:00.123+03:00", "2024-02-29T23:59:59-05:00")


# --------------------------------------------------------------------------- codings


@st.composite
def codings(draw: Draw[Any]) -> Coding:
    return Coding(
        system=draw(st.sampled_from(FOREIGN_SYSTEMS)),
        version=draw(opt(st.sampled_from(("2.71", "2024-01", "1")))),
        code=draw(
            st.one_of(
                st.sampled_from(("X1", "PHOS", "a b", "1.50", "Ö-1")),
                st.text("abcXYZ019-._:", min_size=1, max_size=8),
            )
        ),
        display=draw(opt(texts())),
        user_selected=draw(opt(st.booleans())),
    )


@st.composite
def foreign_concepts(draw: Draw[Any]) -> Concept:
    """A concept coded only by systems the code table does not know."""
    return Concept(
        codings=tuple(draw(st.lists(codings(), min_size=1, max_size=3))),
        text=draw(st.one_of(texts(), texts(), st.none())),
    )


@cache
def recognisable(*kinds: str) -> tuple[str, ...]:
    """Keys of ``kinds`` with codings that name them alone (so the table recognises them)."""
    return tuple(
        k
        for k in keys(*kinds)
        if TERMINOLOGY.concept(k).codings and Concept.of_key(k).recognised(*kinds) == k
    )


@st.composite
def source_codes(
    draw: Draw[Any], kinds: tuple[str, ...], pool: tuple[str, ...] | None = None
) -> tuple[str | None, Concept | None]:
    """(key, source code): a key alone, a key the source codes with more codings, or a code the
    table does not know."""
    pool = pool if pool is not None else recognisable(*kinds)
    how = draw(st.sampled_from(("key", "key+source", "source")))
    if how == "source" or not pool:
        return None, draw(foreign_concepts())
    key = draw(st.sampled_from(pool))
    if how == "key" or key not in recognisable(*kinds):
        return key, None
    extra = draw(st.lists(codings(), min_size=1, max_size=2))
    own = Concept.of_key(key)
    return key, Concept(codings=(*own.codings, *extra), text=draw(opt(texts())))


@st.composite
def with_extra(draw: Draw[Any], key: str) -> Concept:
    """``key``'s codings followed by the source's own."""
    extra = draw(st.lists(codings(), min_size=1, max_size=2))
    return Concept(codings=(*Concept.of_key(key).codings, *extra), text=draw(opt(texts())))


# --------------------------------------------------------------------------- quantities & values


@st.composite
def quantities(draw: Draw[Any]) -> Quantity:
    coded = draw(st.booleans())
    value = draw(st.one_of(decimals(), decimals(), st.none()))
    unit = draw(opt(st.sampled_from(("mg/dL", "mmol/L", "%", "T-Score", "{tbl}", "10*3/uL"))))
    if value is None and unit is None and not coded:
        value = draw(decimals())
    return Quantity(
        value=value,
        comparator=draw(opt(st.sampled_from(("<", "<=", ">=", ">")))),
        unit=unit,
        system=UCUM if coded else None,
        code=draw(st.sampled_from(("mg/dL", "1", "{T-score}", "kg"))) if coded else None,
    )


@st.composite
def ranges(draw: Draw[Any]) -> Range:
    low, high = draw(st.one_of(quantities(), quantities(), st.none())), draw(opt(quantities()))
    if low is None and high is None:
        low = draw(quantities())
    if low and high and low.value is not None and high.value is not None and low.value > high.value:
        low, high = high, low
    return Range(low=low, high=high)


@st.composite
def periods(draw: Draw[Any]) -> Period:
    start = draw(st.one_of(whens(), whens(), st.none()))
    end = draw(st.one_of(whens(), whens(), st.none()))
    if start is None and end is None:
        start = draw(whens())
    if start and end and before(end, start):
        start, end = end, start
    return Period(start=start, end=end)


@st.composite
def values(draw: Draw[Any]) -> Value:
    kind = draw(
        st.sampled_from(
            (
                "quantity",
                "concept",
                "string",
                "boolean",
                "integer",
                "range",
                "ratio",
                "period",
                "date_time",
                "time",
            )
        )
    )
    raw: Any
    if kind == "quantity":
        raw = draw(quantities())
    elif kind == "concept":
        raw = draw(foreign_concepts())
    elif kind == "string":
        raw = draw(texts())
    elif kind == "boolean":
        raw = draw(st.booleans())
    elif kind == "integer":
        raw = draw(st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from((0, -1, 2**31 - 1))))
    elif kind == "range":
        raw = draw(ranges())
    elif kind == "ratio":
        raw = Ratio(
            numerator=draw(quantities()),
            denominator=draw(st.one_of(quantities(), quantities(), st.none())),
        )
    elif kind == "period":
        raw = draw(periods())
    elif kind == "date_time":
        raw = draw(whens())
    else:
        raw = draw(st.sampled_from(("08:30:00", "23:59:60", "00:00:00.25")))
    return Value.model_validate({kind: raw})


@st.composite
def observed_ranges(draw: Draw[Any]) -> ObservedRange:
    low, high, text = draw(opt(quantities())), draw(opt(quantities())), draw(opt(texts()))
    if low is None and high is None and text is None:
        text = draw(texts())
    return ObservedRange(
        low=low,
        high=high,
        type=draw(opt(foreign_concepts())),
        applies_to=tuple(draw(st.lists(foreign_concepts(), max_size=2))),
        age=draw(opt(ranges())),
        text=text,
    )


@st.composite
def components(draw: Draw[Any]) -> Component:
    value = draw(st.one_of(values(), values(), values(), st.none()))
    return Component(
        code=draw(foreign_concepts()),
        value=value,
        data_absent=draw(opt(foreign_concepts())) if value is None else None,
        interpretation=tuple(draw(st.lists(foreign_concepts(), max_size=2))),
        reference_ranges=tuple(draw(st.lists(observed_ranges(), max_size=2))),
    )


# --------------------------------------------------------------------------- categories


@st.composite
def _category(draw: Draw[Any], system: str, code: str) -> Concept:
    """A category coding as other systems write it: with or without display, version, a
    userSelected flag and a text."""
    coding = Coding(
        system=system,
        code=code,
        display=draw(opt(st.sampled_from((code, code.title(), "Labs")))),
        version=draw(opt(st.just("4.0.1"))),
        user_selected=draw(opt(st.booleans())),
    )
    return Concept(codings=(coding,), text=draw(opt(texts())))


@st.composite
def observation_categories(draw: Draw[Any]) -> tuple[Concept, ...] | None:
    """None (ours), none at all, or the source's: never the lone category laboratory."""
    how = draw(st.sampled_from(("ours", "none", "source")))
    if how == "ours":
        return None
    if how == "none":
        return ()
    codes = draw(
        st.lists(
            st.sampled_from(
                ("vital-signs", "imaging", "exam", "survey", "procedure", "laboratory")
            ),
            min_size=1,
            max_size=2,
            unique=True,
        )
    )
    if codes == ["laboratory"]:
        codes.append("survey")
    cats = [draw(_category(OBSERVATION_CATEGORY, c)) for c in codes]
    if draw(st.booleans()):
        cats.append(draw(foreign_concepts()))
    return tuple(cats)


@st.composite
def lab_categories(draw: Draw[Any]) -> tuple[Concept, ...] | None:
    """A lab's categories as another system writes "laboratory"."""
    if draw(st.booleans()):
        return None
    return (draw(_category(OBSERVATION_CATEGORY, "laboratory")),)


@st.composite
def report_categories(draw: Draw[Any], *, lab: bool) -> tuple[Concept, ...] | None:
    """A report's categories: a laboratory service for a lab panel, another for a study."""
    if draw(st.booleans()):
        return None
    services = ("LAB", "CH", "HM") if lab else ("RAD", "CUS", "CT", "NMR")
    return (draw(_category(DIAGNOSTIC_SERVICE, draw(st.sampled_from(services)))),)


@st.composite
def condition_categories(draw: Draw[Any]) -> tuple[Concept, ...] | None:
    """None (ours), none at all, or the source's (never exactly our problem-list-item)."""
    how = draw(st.sampled_from(("ours", "none", "source")))
    if how == "ours":
        return None
    if how == "none":
        return ()
    code = draw(st.sampled_from(("encounter-diagnosis", "problem-list-item", "health-concern")))
    category = draw(_category(CONDITION_CATEGORY, code))
    ours = {"encounter-diagnosis": "Encounter Diagnosis", "problem-list-item": "Problem List Item"}
    coding = category.codings[0]
    if coding.display == ours.get(code) and not (
        coding.version or coding.user_selected is not None
    ):
        # exactly our own category: spelled another way so the item stays what it is
        category = Concept(codings=(coding.model_copy(update={"display": None}),), text="source")
    return (category,)


# --------------------------------------------------------------------------- coded observations


@st.composite
def coded_observations(
    draw: Draw[Any], oid: str, members: tuple[str, ...], reports: tuple[str, ...]
) -> CodedObservation:
    code = draw(foreign_concepts())
    if draw(st.booleans()) and condition_keys():
        # recognised as a concept of the table: its coding first, then the source's own
        key = draw(st.sampled_from(condition_keys()))
        code = Concept(codings=(*Concept.of_key(key).codings, *code.codings), text=code.text)
    value = draw(st.one_of(values(), values(), values(), st.none()))
    when = draw(st.sampled_from(("date", "period", "none")))
    return CodedObservation(
        id=oid,
        code=code,
        status=draw(
            st.sampled_from(("registered", "preliminary", "final", "amended", "corrected"))
        ),
        category=draw(observation_categories()) or (),
        date=draw(whens()) if when == "date" else None,
        period=draw(periods()) if when == "period" else None,
        issued=draw(opt(st.sampled_from(INSTANTS))),
        value=value,
        data_absent=draw(opt(foreign_concepts())) if value is None else None,
        interpretation=tuple(draw(st.lists(foreign_concepts(), max_size=2))),
        reference_ranges=tuple(draw(st.lists(observed_ranges(), max_size=2))),
        body_site=draw(opt(foreign_concepts())),
        method=draw(opt(foreign_concepts())),
        components=tuple(draw(st.lists(components(), max_size=3))),
        members=tuple(draw(st.lists(st.sampled_from(members), max_size=2))) if members else (),
        report=draw(opt(st.sampled_from(reports))) if reports else None,
        note=draw(opt(texts())),
    )


@cache
def condition_keys() -> tuple[str, ...]:
    """Condition keys whose codings no Observation section reads (so the observation stays)."""
    observed = ("vital", "lab", "dxa-score", "status-question")
    return tuple(
        k
        for k in recognisable("condition")
        if not any(
            TERMINOLOGY.concept(other).kind in observed
            for c in TERMINOLOGY.concept(k).codings
            for other in TERMINOLOGY.keys_for(c.system, c.code)
        )
    )


@cache
def fracture_keys() -> tuple[str, ...]:
    return tuple(
        k for k in recognisable("condition") if TERMINOLOGY.concept(k).extra.get("fracture")
    )


@cache
def diagnosis_keys() -> tuple[str, ...]:
    return tuple(k for k in keys("condition") if not TERMINOLOGY.concept(k).extra.get("fracture"))
