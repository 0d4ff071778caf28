"""The domain model of a PLAO / osteoporosis case (pydantic v2, no FHIR types inside).

A :class:`Case` holds what a clinician reports about one patient: who she is, pregnancy,
delivery and lactation, symptoms, vitals, labs, DXA scores, imaging, fractures per site,
diagnoses (and the secondary causes that were excluded), medications, care and follow-up.

Conventions:

* Coded things are named by a *key* of the code table (``fhir_plao/data/terminology.json``),
  e.g. ``"phosphate"`` or ``"vertebra-t5"``; the table holds the codes and their sources. Where no
  verified code exists a concept is given as free ``text`` instead.
* Measured values are :class:`~decimal.Decimal` and keep their digits (``1.50`` stays ``1.50``).
* Dates are FHIR date / dateTime strings and keep their precision: ``2023``, ``2023-06``,
  ``2023-06-14``, or ``2023-06-14T09:30:00+03:00`` (a time needs an offset).
* Every list item that other items point at has an ``id`` unique within the case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self, get_args, get_origin

from pydantic import AfterValidator, Field, model_validator

from fhir_plao import jsonio
from fhir_plao._types import INT32_MAX, DateOnly, LocalId, Model, Number, When, in_order
from fhir_plao.coded import (
    CONDITION_CATEGORY,
    DIAGNOSTIC_SERVICE,
    OBSERVATION_CATEGORY,
    SCORE_UNIT_TEXT,
    CodedObservation,
    Coding,
    Concept,
    ObservationStatus,
    Period,
    our_category,
    shown_unit,
)
from fhir_plao.errors import InputError
from fhir_plao.terminology import TERMINOLOGY

__all__ = [
    "SECTIONS",
    "Care",
    "Case",
    "CodedObservation",
    "Concept",
    "Delivery",
    "Diagnosis",
    "DxaScan",
    "DxaScore",
    "Encounter",
    "Finding",
    "FollowUp",
    "FollowUpPhase",
    "Fracture",
    "ImagingSeries",
    "ImagingStudy",
    "LabPanel",
    "LabResult",
    "Lactation",
    "Medication",
    "Outcome",
    "Patient",
    "Pregnancy",
    "ReferenceRange",
    "StatusObservation",
    "Symptom",
    "Vital",
    "case_from_json",
    "case_to_json",
    "load_case",
]

# --------------------------------------------------------------------------- code-table keys


def _key_of(*kinds: str) -> AfterValidator:
    """A validator for a code-table key of one of ``kinds``."""

    def check(value: str) -> str:
        TERMINOLOGY.require(value, *kinds)
        return value

    return AfterValidator(check)


def _kinds(categories: tuple[Concept, ...]) -> set[str | None]:
    """An Observation's categories as codes of the HL7 system (or texts, for text-only ones)."""
    found: set[str | None] = set()
    for cat in categories:
        found |= {c.code for c in cat.codings if c.system == OBSERVATION_CATEGORY}
        if not cat.codings:
            found.add(cat.text)
    return found


def _drop_our_category(data: object, system: str, code: str) -> object:
    """A category that is exactly the one we write for the section is no category of its own."""
    if not isinstance(data, dict) or data.get("category") is None:
        return data
    given = tuple(Concept.model_validate(c) for c in data["category"])
    if given == our_category(system, code):
        return {**data, "category": None}
    return data


def _drop_shown_unit(data: object, unit_field: str, text_field: str) -> object:
    """A unit text that is just how we show the unit is no text of its own: dropped."""
    if not isinstance(data, dict) or not isinstance(data.get(unit_field), str):
        return data
    if data.get(text_field) == shown_unit(data[unit_field]):
        return {k: v for k, v in data.items() if k != text_field}
    return data


def _settle_code(
    data: object,
    key_field: str,
    kinds: tuple[str, ...],
    *,
    named: bool = False,
    default: str | None = None,
) -> object:
    """One spelling of an item coded by the source (a ``before`` validator's body).

    With the source's ``code``, the item's key is what the code table recognises the code as
    (filled in when left out, an error when it says otherwise); a code that is exactly what the
    key writes is dropped. For a ``named`` item (a key and a text), a code that is the key's
    codings with another text becomes that text.
    """
    if not isinstance(data, dict) or data.get("code") is None:
        return data
    code = Concept.model_validate(data["code"])
    named_by_code = code.recognised(*kinds)
    found = named_by_code or default
    given = data.get(key_field)
    if given is not None and given != found:
        raise ValueError(f"{key_field}: {given!r} is not what code names ({found or 'nothing'})")
    out = {**data, key_field: found}
    rest = {k: v for k, v in out.items() if k != "code"}
    if named_by_code is not None:
        if code == Concept.of_key(named_by_code):
            return rest
        if named and code.text is not None and code == Concept.of_key(named_by_code, code.text):
            return {**rest, "text": code.text}
    elif named and not code.codings:
        return {**rest, "text": code.text}  # a free text is the item's text, not a code
    return out


class _Named(Model):
    """An item named by a code-table ``concept``, a free ``text``, or both (text then overrides
    the table's wording). A text equal to the table's is dropped: one spelling per fact."""

    #: the code-table kinds of the item's ``concept``
    _concept_kinds: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _canonical_text(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        key, text = data.get("concept"), data.get("text")
        if key is None and isinstance(text, str):
            # a text that is the whole of a text-only concept *is* that concept
            same = TERMINOLOGY.key_for_text(text, *cls._concept_kinds)
            if same is not None and not TERMINOLOGY.concept(same).codings:
                return {**{k: v for k, v in data.items() if k != "text"}, "concept": same}
        if isinstance(key, str) and key in TERMINOLOGY and text is not None:
            concept = TERMINOLOGY.concept(key)
            if text == concept.text:
                return {k: v for k, v in data.items() if k != "text"}
            if not concept.codings:
                raise ValueError(
                    f"text: {key!r} has no code, only its text {concept.text!r}; give the "
                    "concept or a text, not both"
                )
        return data


# --------------------------------------------------------------------------- patient & obstetrics


class Patient(Model):
    """The patient. The identifier must be synthetic in examples (never a real one)."""

    identifier_system: str | None = Field(
        default=None,
        description="URI of the assigning system of the identifier (None: the source gave none)",
        pattern=r"^(https?://|urn:)\S+$",
    )
    identifier: str = Field(min_length=1, max_length=200)
    birth_date: DateOnly | None = None
    sex: Literal["female", "male", "other", "unknown"]


class Delivery(Model):
    date: When
    mode: Annotated[str, _key_of("procedure")] = Field(
        description="procedure key, e.g. cesarean-section"
    )
    anaesthesia: Annotated[str, _key_of("procedure")] | None = None
    note: str | None = None


class Pregnancy(Model):
    """One pregnancy. ``gravida`` is the pregnancy's number (1 = primigravida)."""

    id: LocalId
    gravida: int | None = Field(default=None, ge=1, le=INT32_MAX)
    delivery: Delivery | None = None
    note: str | None = None


class Lactation(Model):
    """Breastfeeding after a pregnancy; ``stopped`` and why."""

    pregnancy: LocalId
    start: When | None = None
    stopped: When | None = None
    stop_reason: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        in_order(self.start, self.stopped, "stopped", "start")
        return self


class StatusObservation(Model):
    """A recorded pregnancy or breastfeeding status at a time (e.g. pregnant, not breastfeeding)."""

    id: LocalId
    question: Annotated[str, _key_of("status-question")]
    answer: Annotated[str, _key_of("status-answer")]
    date: When
    note: str | None = None

    @model_validator(mode="after")
    def _answer_fits_question(self) -> Self:
        expected = TERMINOLOGY.concept(self.answer).extra.get("question")
        if expected != self.question:
            raise ValueError(f"answer {self.answer!r} does not answer {self.question!r}")
        return self


# --------------------------------------------------------------------------- observations

ReportStatus = Literal[
    "registered",
    "partial",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "appended",
    "cancelled",
    "entered-in-error",
    "unknown",
]


class Symptom(Model):
    id: LocalId
    concept: Annotated[str, _key_of("condition")]
    severity: Literal["mild", "moderate", "severe"] | None = None
    onset: When | None = None
    resolved: When | None = None
    note: str | None = None


class Finding(_Named):
    """A physical-exam or history finding: a concept (key or text) and what was found."""

    _concept_kinds = ("condition", "finding")

    id: LocalId
    category: Literal["exam", "social-history", "history"]
    concept: Annotated[str, _key_of("condition", "finding")] | None = None
    text: str | None = None
    value: str = Field(min_length=1, description="what was found, as written")
    date: When | None = None

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.concept is None and not self.text:
            raise ValueError("a finding needs a concept key or a text")
        return self


class Vital(Model):
    id: LocalId
    kind: Annotated[str, _key_of("vital")]
    value: Number
    unit: str
    date: When

    @model_validator(mode="after")
    def _unit_fits(self) -> Self:
        TERMINOLOGY.require_unit(self.kind, self.unit, field="unit")
        if self.value <= 0:
            raise ValueError(f"value: a {self.kind} must be positive, got {self.value}")
        return self


class ReferenceRange(Model):
    low: Number | None = None
    high: Number | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.low is None and self.high is None and not self.text:
            raise ValueError("a reference range needs low, high or text")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class LabPanel(Model):
    """A group of results reported together (one DiagnosticReport): its labs name it as their
    ``panel``, other observations as their ``report``. A report the code table does not know
    keeps the source's ``code`` (and its category, when not the laboratory one)."""

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        data = _drop_our_category(data, DIAGNOSTIC_SERVICE, "LAB")
        return _settle_code(data, "concept", ("lab-panel", "lab"))

    id: LocalId
    concept: Annotated[str, _key_of("lab-panel", "lab")] | None = None
    code: Concept | None = None
    status: ReportStatus = "final"
    category: tuple[Concept, ...] | None = Field(
        default=None, description="the source's categories (None: ours; empty: none given)"
    )
    date: When | None = None
    issued: str | None = None
    conclusion: str | None = None

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.concept is None and self.code is None:
            raise ValueError("a lab panel needs a concept key or the source's code")
        return self


class LabResult(Model):
    """One lab test. A normal test reported without a figure has ``value`` None and ``N``.

    ``test`` is the code-table key when the test is one we know; ``code`` keeps the source's
    own CodeableConcept when it says more than (or other than) the table's codings and text.
    """

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        data = _drop_our_category(data, OBSERVATION_CATEGORY, "laboratory")
        return _drop_shown_unit(_settle_code(data, "test", ("lab",)), "unit", "unit_text")

    id: LocalId
    test: Annotated[str, _key_of("lab")] | None = None
    code: Concept | None = None
    status: ObservationStatus = "final"
    category: tuple[Concept, ...] | None = Field(
        default=None, description="the source's categories (None: ours; empty: none given)"
    )
    panel: LocalId | None = None
    date: When | None = None
    issued: str | None = None
    value: Number | None = None
    value_text: str | None = None
    unit: str | None = None
    unit_text: str | None = Field(
        default=None, description="the unit as the source shows it, when not the UCUM code"
    )
    reference_range: ReferenceRange | None = None
    interpretation: Literal["H", "L", "N", "A", "HH", "LL"] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.test is None and self.code is None:
            raise ValueError("a lab needs a test key or the source's code")
        if (
            self.test is None
            and self.category is not None
            and _kinds(self.category) != {"laboratory"}
        ):
            raise ValueError(
                "category: a lab the code table does not know is a lab by its category "
                "laboratory (else it is one of the observations)"
            )
        if self.value is not None and self.value_text is not None:
            raise ValueError("value and value_text: give one, not both")
        if self.value is not None and self.unit is None:
            raise ValueError(f"unit: a value of {self.test or 'a lab'} needs a unit")
        rr = self.reference_range
        bounded = rr is not None and (rr.low is not None or rr.high is not None)
        if self.value is None and self.unit is not None and not bounded:
            raise ValueError("unit: given without a value or a reference range bound")
        if bounded and self.unit is None:
            raise ValueError("unit: a reference range bound needs the unit")
        if self.unit is not None and self.test is not None:
            TERMINOLOGY.require_unit(self.test, self.unit, field="unit")
        if self.unit_text is not None and self.unit is None:
            raise ValueError("unit_text: given without a unit")
        return self


class DxaScore(Model):
    site: Annotated[str, _key_of("dxa-site")]
    kind: Literal["T", "Z", "BMD"]
    value: Number
    unit: str | None = Field(
        default=None, description="g/cm2 for BMD; for T/Z scores '1' (or None, meaning '1')"
    )
    unit_text: str | None = Field(
        default=None, description="the unit as the source shows it, when not ours"
    )
    status: ObservationStatus = "final"
    category: tuple[Concept, ...] | None = Field(
        default=None, description="the source's categories (None: imaging)"
    )
    issued: str | None = None
    code: Concept | None = Field(
        default=None, description="the source's code, when not the table's for the score"
    )
    body_site: Concept | None = Field(
        default=None, description="the source's bodySite, when not the table's for the site"
    )
    site_from_code: bool = Field(
        default=False, description="the source gave no bodySite: its code names the site"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        # the source's code and bodySite: they must name this score and site; dropped when
        # they are exactly what we write for them
        data = _drop_our_category(data, OBSERVATION_CATEGORY, "imaging")
        if not isinstance(data, dict):
            return data
        out = dict(data)
        site, kind = out.get("site"), out.get("kind")
        if out.get("code") is not None and isinstance(site, str) and isinstance(kind, str):
            code = Concept.model_validate(out["code"])
            try:
                score_key = TERMINOLOGY.dxa_score_key(site, kind)
            except (KeyError, ValueError):
                return out  # the site's own check names the problem
            if code.recognised("dxa-score") != score_key:
                raise ValueError(f"code: does not name the {kind} score of {site}")
            if code == Concept.of_key(score_key):
                del out["code"]
        if out.get("body_site") is not None and isinstance(site, str):
            body = Concept.model_validate(out["body_site"])
            if body.recognised("dxa-site") != site:
                raise ValueError(f"body_site: does not name the site {site}")
            if body == Concept.of_key(site):
                del out["body_site"]
        unit = out.get("unit")
        shown = SCORE_UNIT_TEXT.get(str(kind)) if unit in (None, "1") else shown_unit(str(unit))
        if out.get("unit_text") is not None and out["unit_text"] == shown:
            del out["unit_text"]
        if out.get("site_from_code") and out.get("body_site") is not None:
            raise ValueError("body_site: given, but site_from_code says the source had none")
        return out

    @model_validator(mode="before")
    @classmethod
    def _default_unit(cls, data: object) -> object:
        # '1' is the UCUM unit of a T- or Z-score and the default: keep one spelling of it
        if isinstance(data, dict) and data.get("kind") in ("T", "Z") and data.get("unit") == "1":
            return {k: v for k, v in data.items() if k != "unit"}
        return data

    @model_validator(mode="after")
    def _unit_fits(self) -> Self:
        score_key = TERMINOLOGY.dxa_score_key(self.site, self.kind)
        if self.kind == "BMD":
            if self.unit is None:
                raise ValueError("unit: a BMD needs its unit (g/cm2)")
            if self.value <= 0:
                raise ValueError(f"value: a BMD must be positive, got {self.value}")
        if self.unit is not None:
            TERMINOLOGY.require_unit(score_key, self.unit, field="unit")
        return self


class DxaScan(Model):
    """One DXA visit: its date, label (e.g. "baseline", "1 year") and scores."""

    id: LocalId
    date: When
    scores: tuple[DxaScore, ...] = Field(
        default=(), description="the scores; a report's other results are its observations"
    )
    conclusion: str | None = None

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen = set()
        for i, s in enumerate(self.scores):
            if (s.site, s.kind) in seen:
                raise ValueError(f"scores[{i}]: {s.site} {s.kind} given twice in one scan")
            seen.add((s.site, s.kind))
        return self


class ImagingSeries(Model):
    """One series of an imaging study: an MRI sequence (``T1 sagittal``), an X-ray view."""

    modality: Annotated[str, _key_of("modality")]
    description: str = Field(min_length=1)


class ImagingStudy(Model):
    """An imaging study and its report (X-ray, MRI, mammography, scintigraphy, ...).

    ``concepts`` are the studies the code table knows; a report coded otherwise keeps the
    source's ``code`` (and category and status). ``series`` are the sequences or views taken,
    in order; they are written as the ImagingStudy the report names.
    """

    id: LocalId
    concepts: tuple[Annotated[str, _key_of("imaging")], ...] = ()
    code: Concept | None = None
    status: ReportStatus = "final"
    category: tuple[Concept, ...] | None = Field(
        default=None, description="the source's categories (None: ours; empty: none given)"
    )
    date: When | None = None
    issued: str | None = None
    series: tuple[ImagingSeries, ...] = ()
    findings: tuple[str, ...] = ()
    conclusion: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        return _drop_our_category(data, DIAGNOSTIC_SERVICE, "RAD")

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if not self.concepts and self.code is None:
            raise ValueError("an imaging study needs concepts or the source's code")
        if self.concepts and self.code is not None:
            raise ValueError("code: give the concepts or the source's code, not both")
        if len(set(self.concepts)) != len(self.concepts):
            raise ValueError(f"concepts: {list(self.concepts)} names a study twice")
        return self


# --------------------------------------------------------------------------- conditions


class Fracture(Model):
    """A fracture at one site (a vertebra, or a non-vertebral site such as the femoral neck).

    Active from ``onset``; ``healed`` is when it was found healed (the Condition then resolved).
    ``evidence`` names the imaging studies that show it.
    """

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        data = _drop_our_category(data, CONDITION_CATEGORY, "encounter-diagnosis")
        data = _settle_code(
            data, "concept", ("condition",), default="vertebral-compression-fracture"
        )
        if isinstance(data, dict) and data.get("body_site") is not None:
            body = Concept.model_validate(data["body_site"])
            found = body.recognised("vertebra", "fracture-site")
            given = data.get("site")
            if given is not None and given != found:
                raise ValueError(f"site: {given!r} is not what body_site names ({found})")
            data = {**data, "site": found}
            if found is not None and body == Concept.of_key(found):
                data = {k: v for k, v in data.items() if k != "body_site"}
        return data

    id: LocalId
    site: Annotated[str, _key_of("vertebra", "fracture-site")] | None = None
    concept: Annotated[str, _key_of("condition")] = "vertebral-compression-fracture"
    code: Concept | None = Field(
        default=None, description="the source's code, when not the table's for the concept"
    )
    body_site: Concept | None = Field(
        default=None, description="the source's bodySite, when not the table's for the site"
    )
    category: tuple[Concept, ...] | None = Field(
        default=None, description="the source's categories (None: encounter-diagnosis)"
    )
    verification: Literal["confirmed", "provisional", "differential", "unconfirmed"] | None = Field(
        default="confirmed", description="None: the source gave no verificationStatus"
    )
    onset: When | None = None
    recorded: When | None = None
    healed: When | None = None
    evidence: tuple[LocalId, ...] = ()
    note: str | None = None

    @model_validator(mode="after")
    def _placed(self) -> Self:
        # a fracture is known as one by its site, or by a code the table knows as a fracture
        named = self.code.recognised("condition") if self.code is not None else None
        if self.site is None and not (named and TERMINOLOGY.concept(named).extra.get("fracture")):
            raise ValueError(
                "site: a fracture needs its site, or a code the code table knows as a fracture"
            )
        return self


class Diagnosis(_Named):
    """A diagnosis, or (``verification='refuted'``) a cause that was looked for and excluded."""

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        data = _drop_our_category(data, CONDITION_CATEGORY, "encounter-diagnosis")
        return _settle_code(data, "concept", ("condition",), named=True)

    _concept_kinds = ("condition",)

    id: LocalId
    concept: Annotated[str, _key_of("condition")] | None = None
    text: str | None = None
    code: Concept | None = Field(
        default=None, description="the source's code, written as given (concept: what we know)"
    )
    category: tuple[Concept, ...] | None = Field(
        default=None, description="the source's categories (None: encounter-diagnosis)"
    )
    verification: (
        Literal[
            "confirmed", "provisional", "differential", "refuted", "unconfirmed", "entered-in-error"
        ]
        | None
    ) = Field(default="confirmed", description="None: the source gave no verificationStatus")
    clinical_status: (
        Literal["active", "recurrence", "relapse", "inactive", "remission", "resolved"] | None
    ) = None
    severity: Concept | None = None
    onset: When | None = None
    recorded: When | None = None
    abatement: When | None = None
    evidence: tuple[LocalId, ...] = ()
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.concept is None and not self.text and self.code is None:
            raise ValueError("a diagnosis needs a concept key, a text or the source's code")
        if self.code is not None and self.text is not None:
            raise ValueError("text: the source's code carries its own text")
        if self.verification in ("refuted", "entered-in-error") and self.clinical_status:
            raise ValueError(
                f"clinical_status: must be empty for a {self.verification} diagnosis (con-5)"
            )
        return self


# --------------------------------------------------------------------------- treatment & care


def _check_dose_unit(unit: str) -> None:
    """A dose unit that UCUM knows must measure what a dose can (a mass, an amount, a volume,
    a count): ``2000 cm`` of vitamin D3 is refused. A source's unit that is not UCUM at all
    (``tablet``) is kept as written."""
    from fhir_plao.ucum import DOSE_DIMENSIONS, UcumError, dimension

    try:
        found = dimension(unit)
    except UcumError:
        return
    if found not in DOSE_DIMENSIONS:
        raise ValueError(
            f"dose_unit: {unit!r} measures {found}, not a dose (a mass, an amount of substance, "
            f"a volume or a count)"
        )


class Medication(Model):
    """A medication taken: drug, dose, how often, route, and when."""

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        data = _drop_shown_unit(
            _settle_code(data, "drug", ("medication",)), "dose_unit", "dose_unit_text"
        )
        if isinstance(data, dict) and data.get("route_code") is not None:
            route = Concept.model_validate(data["route_code"])
            key = route.recognised("route")
            if key is not None and route == Concept.of_key(key):
                rest = {k: v for k, v in data.items() if k != "route_code"}
                return {**rest, "route": key}
        return data

    id: LocalId
    drug: Annotated[str, _key_of("medication")] | None = None
    code: Concept | None = Field(
        default=None, description="the source's drug code, written as given (drug: what we know)"
    )
    record: Literal["statement", "request"] = Field(
        default="statement",
        description="taken (MedicationStatement) or prescribed (MedicationRequest)",
    )
    intent: (
        Literal[
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ]
        | None
    ) = None
    authored: When | None = None
    dose: Number | None = None
    dose_unit: str | None = None
    dose_unit_text: str | None = None
    frequency: int | None = Field(default=None, ge=1, le=INT32_MAX, description="times per period")
    period: Number | None = None
    period_unit: Literal["s", "min", "h", "d", "wk", "mo", "a"] | None = None
    route: Annotated[str, _key_of("route")] | None = None
    route_code: Concept | None = None
    as_needed: bool | None = None
    dosage_text: str | None = None
    start: When | None = None
    end: When | None = None
    status: Literal[
        "active",
        "completed",
        "stopped",
        "on-hold",
        "intended",
        "entered-in-error",
        "unknown",
        "not-taken",
        "cancelled",
        "draft",
    ]
    reason: tuple[LocalId, ...] = ()
    reason_code: tuple[Concept, ...] = ()
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.drug is None and self.code is None:
            raise ValueError("drug: a medication needs a drug key or the source's code")
        if self.route is not None and self.route_code is not None:
            raise ValueError("route_code: give the route key or the source's route, not both")
        statuses = _STATEMENT_STATUS if self.record == "statement" else _REQUEST_STATUS
        if self.status not in statuses:
            raise ValueError(f"status: {self.status!r} is not a {self.record}'s status")
        if self.record == "request" and self.intent is None:
            raise ValueError("intent: a prescription (record 'request') needs its intent")
        if self.record == "statement" and (self.intent or self.authored):
            raise ValueError("intent and authored: only for a prescription (record 'request')")
        if self.dose is not None:
            if self.dose <= 0:
                raise ValueError(f"dose: must be positive, got {self.dose}")
        elif self.dose_unit is not None:
            raise ValueError("dose_unit: given without a dose")
        if self.dose_unit is not None:
            _check_dose_unit(self.dose_unit)
        if self.dose_unit_text is not None and self.dose_unit is None:
            raise ValueError("dose_unit_text: given without a dose_unit")
        if (self.period is None) != (self.period_unit is None):
            raise ValueError("period and period_unit: give both or neither")
        if self.frequency is not None and self.period is None:
            raise ValueError("period: required with a frequency")
        if self.period is not None and self.period <= 0:
            raise ValueError(f"period: must be positive, got {self.period}")
        in_order(self.start, self.end)
        return self


_STATEMENT_STATUS = (
    "active",
    "completed",
    "entered-in-error",
    "intended",
    "stopped",
    "on-hold",
    "unknown",
    "not-taken",
)
_REQUEST_STATUS = (
    "active",
    "on-hold",
    "cancelled",
    "completed",
    "entered-in-error",
    "stopped",
    "draft",
    "unknown",
)


class Care(_Named):
    """A non-drug treatment: a procedure done (lactation stopped, orthosis worn) or planned care
    (diet, exercise, walking) that belongs in the care plan."""

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        return _settle_code(data, "concept", ("procedure",), named=True)

    _concept_kinds = ("procedure",)

    id: LocalId
    kind: Literal["procedure", "plan"]
    concept: Annotated[str, _key_of("procedure")] | None = None
    text: str | None = None
    code: Concept | None = Field(
        default=None, description="the source's code, written as given (concept: what we know)"
    )
    detail: str | None = None
    date: When | None = Field(default=None, description="when a procedure was done, as a time")
    start: When | None = None
    end: When | None = None
    body_site: tuple[Concept, ...] = ()
    reason: tuple[LocalId, ...] = ()
    reason_code: tuple[Concept, ...] = ()
    status: Literal[
        "not-started",
        "scheduled",
        "in-progress",
        "on-hold",
        "completed",
        "stopped",
        "not-done",
        "unknown",
        "entered-in-error",
    ]

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.concept is None and not self.text and self.code is None:
            raise ValueError("care needs a concept key, a text or the source's code")
        if self.code is not None and self.text is not None:
            raise ValueError("text: the source's code carries its own text")
        if self.kind == "procedure" and self.status == "scheduled":
            raise ValueError("status: a procedure is not 'scheduled' (use 'not-started')")
        if self.kind == "plan" and self.status in ("not-done", "unknown", "entered-in-error"):
            raise ValueError(f"status: {self.status!r} is a procedure's status, not a plan's")
        if self.date is not None and (self.start or self.end):
            raise ValueError("date: a time or a start and end, not both")
        in_order(self.start, self.end)
        if self.kind == "plan" and (self.body_site or self.reason or self.reason_code):
            raise ValueError("body_site and reason: only for a procedure")
        return self


class FollowUpPhase(Model):
    """Visits every ``every`` ``unit`` from ``start`` to ``end``."""

    every: int = Field(ge=1, le=INT32_MAX)
    unit: Literal["d", "wk", "mo", "a"]
    start: When
    end: When
    status: Literal["not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped"]
    description: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        in_order(self.start, self.end)
        return self


class Outcome(Model):
    """An assessment at a follow-up: a summary and the separate findings behind it."""

    date: When
    summary: str = Field(min_length=1)
    findings: tuple[str, ...] = ()


class FollowUp(Model):
    phases: tuple[FollowUpPhase, ...] = ()
    outcomes: tuple[Outcome, ...] = ()


# --------------------------------------------------------------------------- encounters


class Encounter(Model):
    """A visit: the hospital stay, a control visit, an outpatient consultation.

    ``kind`` is its class as a code-table key (``inpatient``, ``ambulatory``); ``class_code`` the
    source's class coding when the table does not know it. ``type`` keeps the source's types.
    """

    id: LocalId
    status: Literal[
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    ]
    kind: Annotated[str, _key_of("encounter-class")] | None = None
    class_code: Coding | None = None
    type: tuple[Concept, ...] = ()
    period: Period | None = None
    reason: tuple[LocalId, ...] = ()
    reason_code: tuple[Concept, ...] = ()
    discharge: Concept | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        # a class coding the table knows, written as the table writes it, is that key
        if not isinstance(data, dict) or data.get("class_code") is None:
            return data
        coding = Coding.model_validate(data["class_code"])
        key = Concept(codings=(coding,)).recognised("encounter-class")
        if key is not None and Concept(codings=(coding,)).codings == Concept.of_key(key).codings:
            if data.get("kind") not in (None, key):
                raise ValueError(f"kind: {data['kind']!r} is not what class_code names ({key})")
            return {**{k: v for k, v in data.items() if k != "class_code"}, "kind": key}
        return data

    @model_validator(mode="after")
    def _classed(self) -> Self:
        if (self.kind is None) == (self.class_code is None):
            raise ValueError("kind or class_code: an encounter has one class (R4 Encounter.class)")
        return self


# --------------------------------------------------------------------------- the case


class Case(Model):
    """One patient's PLAO / osteoporosis case."""

    comment: str | None = Field(
        default=None,
        description="a note about this file (e.g. where its data come from); not sent to FHIR",
    )
    patient: Patient
    pregnancies: tuple[Pregnancy, ...] = ()
    lactations: tuple[Lactation, ...] = ()
    status_observations: tuple[StatusObservation, ...] = ()
    symptoms: tuple[Symptom, ...] = ()
    findings: tuple[Finding, ...] = ()
    vitals: tuple[Vital, ...] = ()
    lab_panels: tuple[LabPanel, ...] = ()
    labs: tuple[LabResult, ...] = ()
    dxa_scans: tuple[DxaScan, ...] = ()
    imaging: tuple[ImagingStudy, ...] = ()
    observations: tuple[CodedObservation, ...] = Field(
        default=(), description="other observations, kept as their source coded them"
    )
    fractures: tuple[Fracture, ...] = ()
    diagnoses: tuple[Diagnosis, ...] = ()
    medications: tuple[Medication, ...] = ()
    care: tuple[Care, ...] = ()
    encounters: tuple[Encounter, ...] = ()
    follow_up: FollowUp | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_empty_follow_up(cls, data: object) -> object:
        # a follow-up with neither phases nor outcomes says nothing: one spelling, None
        if isinstance(data, dict) and isinstance(data.get("follow_up"), dict | FollowUp):
            fu = data["follow_up"]
            phases = fu.get("phases") if isinstance(fu, dict) else fu.phases
            outcomes = fu.get("outcomes") if isinstance(fu, dict) else fu.outcomes
            if not phases and not outcomes:
                return {k: v for k, v in data.items() if k != "follow_up"}
        return data

    @model_validator(mode="after")
    def _references(self) -> Self:
        ids: dict[str, str] = {}
        for field, model in SECTIONS.items():
            if "id" not in model.model_fields:
                continue
            for i, item in enumerate(getattr(self, field)):
                if item.id in ids:
                    raise ValueError(
                        f"{field}[{i}].id: {item.id!r} is already used by {ids[item.id]}"
                    )
                ids[item.id] = f"{field}[{i}]"
        pregnancy_ids = {p.id for p in self.pregnancies}
        for i, lac in enumerate(self.lactations):
            if lac.pregnancy not in pregnancy_ids:
                raise ValueError(f"lactations[{i}].pregnancy: no pregnancy {lac.pregnancy!r}")
        panel_ids = {p.id for p in self.lab_panels}
        for i, lab in enumerate(self.labs):
            if lab.panel is not None and lab.panel not in panel_ids:
                raise ValueError(f"labs[{i}].panel: no lab panel {lab.panel!r}")
        study_ids = {s.id for s in self.imaging}
        for field in ("fractures", "diagnoses"):
            for i, item in enumerate(getattr(self, field)):
                for j, ev in enumerate(item.evidence):
                    if ev not in study_ids:
                        raise ValueError(f"{field}[{i}].evidence[{j}]: no imaging study {ev!r}")
        condition_ids = (
            {d.id for d in self.diagnoses}
            | {f.id for f in self.fractures}
            | {s.id for s in self.symptoms}
        )
        for field in ("medications", "care", "encounters"):
            for i, item in enumerate(getattr(self, field)):
                for j, reason in enumerate(item.reason):
                    if reason not in condition_ids:
                        raise ValueError(
                            f"{field}[{i}].reason[{j}]: no diagnosis, fracture or symptom "
                            f"{reason!r}"
                        )
        report_ids = panel_ids | study_ids | {d.id for d in self.dxa_scans}
        observed_ids = (
            {o.id for o in self.observations}
            | {lab.id for lab in self.labs}
            | {v.id for v in self.vitals}
        )
        for i, obs in enumerate(self.observations):
            if obs.report is not None and obs.report not in report_ids:
                raise ValueError(f"observations[{i}].report: no report {obs.report!r}")
            for j, member in enumerate(obs.members):
                if member not in observed_ids or member == obs.id:
                    raise ValueError(f"observations[{i}].members[{j}]: no observation {member!r}")
        seen: set[tuple[str, str | None]] = set()
        for i, f in enumerate(self.fractures):
            if f.site is None or f.onset is None:
                continue
            if (f.site, f.onset) in seen:
                raise ValueError(f"fractures[{i}].site: {f.site} listed twice with one onset")
            seen.add((f.site, f.onset))
        return self


#: The case's lists of items, in model order: field name -> the model of its items.
SECTIONS: dict[str, type[Model]] = {
    name: get_args(field.annotation)[0]
    for name, field in Case.model_fields.items()
    if get_origin(field.annotation) is tuple
}


# --------------------------------------------------------------------------- reading & writing


def case_from_json(text: str | bytes, *, source: str = "case") -> Case:
    """Parse a case from JSON text; errors name the file and the field."""
    from pydantic import ValidationError as PydanticValidationError

    data = jsonio.loads(text)
    if not isinstance(data, dict):
        raise InputError("a case must be a JSON object", location=source)
    if "resourceType" in data:
        raise InputError(
            f"this is a FHIR {data['resourceType']}, not a case: use --to case to read FHIR",
            location=source,
        )
    try:
        return Case.model_validate(data)
    except PydanticValidationError as exc:
        raise InputError(_describe(exc), location=source) from None


def load_case(path: str | Path) -> Case:
    """Read a case JSON file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=str(p)) from None
    try:
        return case_from_json(raw, source=str(p))
    except jsonio.JsonError as exc:
        raise InputError(str(exc), location=str(p)) from None


def case_to_json(case: Case, *, indent: int | None = 2) -> str:
    """The case as JSON text (decimals exact, empty and default fields left out), ending in a
    newline; ``indent=None`` gives one line (an NDJSON record)."""
    data = case.model_dump(mode="python", exclude_defaults=True)
    return jsonio.dumps(data, indent=indent) + "\n"


def _describe(exc: object) -> str:
    from pydantic import ValidationError as PydanticValidationError

    assert isinstance(exc, PydanticValidationError)
    lines = []
    for err in exc.errors():
        loc = _loc(err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (misspelled?)"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "invalid case: " + "; ".join(lines)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-after") or part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else part
    return out
