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

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fhir_plao import jsonio
from fhir_plao.errors import InputError
from fhir_plao.terminology import TERMINOLOGY

__all__ = [
    "SECTIONS",
    "Care",
    "Case",
    "Delivery",
    "Diagnosis",
    "DxaScan",
    "DxaScore",
    "Finding",
    "FollowUp",
    "FollowUpPhase",
    "Fracture",
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

# --------------------------------------------------------------------------- primitive types

_DATE_RE = re.compile(r"^(\d{4})(-(\d{2})(-(\d{2}))?)?$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
)


def _check_when(value: str) -> str:
    """A FHIR date or dateTime with its precision kept; calendar checked."""
    m = _DATE_RE.match(value)
    if m:
        year, month, day = m.group(1), m.group(3), m.group(5)
        try:
            date(int(year), int(month or 1), int(day or 1))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a calendar date ({exc})") from None
        if int(year) < 1:
            raise ValueError(f"{value!r}: year must be 0001 or later")
        return value
    m = _DATETIME_RE.match(value)
    if m:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a real date and time ({exc})") from None
        offset = m.group(8)
        if offset != "Z" and offset[1:] > "14:00":
            raise ValueError(f"{value!r}: offset {offset} is out of range (-14:00 to +14:00)")
        return value
    raise ValueError(
        f"{value!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or dateTime with seconds "
        "and an offset (YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm))"
    )


def _check_date_only(value: str) -> str:
    if not _DATE_RE.match(value):
        raise ValueError(f"{value!r} is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
    return _check_when(value)


When = Annotated[str, AfterValidator(_check_when)]
"""A FHIR date or dateTime string; its precision is part of the value."""

DateOnly = Annotated[str, AfterValidator(_check_date_only)]
"""A FHIR date (no time): year, year-month or full date."""


def _check_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
        raise ValueError(f"{value!r} is not a usable id (letters, digits, '-' and '.', 1-64)")
    return value


LocalId = Annotated[str, AfterValidator(_check_id)]


def _check_finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    return value


Number = Annotated[Decimal, AfterValidator(_check_finite)]


def _key_of(*kinds: str) -> AfterValidator:
    """A validator for a code-table key of one of ``kinds``."""

    def check(value: str) -> str:
        TERMINOLOGY.require(value, *kinds)
        return value

    return AfterValidator(check)


def _before(a: str, b: str) -> bool:
    """True when date ``a`` is surely before date ``b`` (compared at their common precision)."""
    n = min(len(a), len(b), 10)
    return a[:n] < b[:n]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_blank_text(cls, value: object) -> object:
        # FHIR has no empty strings: an empty or blank text would vanish on the way out
        texts = value if isinstance(value, tuple) else (value,)
        for text in texts:
            if isinstance(text, str) and not text.strip():
                raise ValueError("must not be empty or blank (FHIR strings carry content)")
        return value


class _Named(_Model):
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


class Patient(_Model):
    """The patient. The identifier must be synthetic in examples (never a real one)."""

    identifier_system: str = Field(
        description="URI of the assigning system of the identifier",
        pattern=r"^(https?://|urn:)\S+$",
    )
    identifier: str = Field(min_length=1, max_length=200)
    birth_date: DateOnly | None = None
    sex: Literal["female", "male", "other", "unknown"]


class Delivery(_Model):
    date: When
    mode: Annotated[str, _key_of("procedure")] = Field(
        description="procedure key, e.g. cesarean-section"
    )
    anaesthesia: Annotated[str, _key_of("procedure")] | None = None
    note: str | None = None


class Pregnancy(_Model):
    """One pregnancy. ``gravida`` is the pregnancy's number (1 = primigravida)."""

    id: LocalId
    gravida: int | None = Field(default=None, ge=1)
    delivery: Delivery | None = None
    note: str | None = None


class Lactation(_Model):
    """Breastfeeding after a pregnancy; ``stopped`` and why."""

    pregnancy: LocalId
    start: When | None = None
    stopped: When | None = None
    stop_reason: str | None = None


class StatusObservation(_Model):
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


class Symptom(_Model):
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


class Vital(_Model):
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


class ReferenceRange(_Model):
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


class LabPanel(_Model):
    """A group of lab results reported together (one DiagnosticReport)."""

    id: LocalId
    concept: Annotated[str, _key_of("lab-panel", "lab")]
    date: When
    conclusion: str | None = None


class LabResult(_Model):
    """One lab test. A normal test reported without a figure has ``value`` None and ``N``."""

    id: LocalId
    test: Annotated[str, _key_of("lab")]
    panel: LocalId | None = None
    date: When
    value: Number | None = None
    value_text: str | None = None
    unit: str | None = None
    reference_range: ReferenceRange | None = None
    interpretation: Literal["H", "L", "N", "A", "HH", "LL"] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.value is not None and self.value_text is not None:
            raise ValueError("value and value_text: give one, not both")
        if self.value is not None:
            if self.unit is None:
                raise ValueError(f"unit: a value of {self.test} needs a unit")
            TERMINOLOGY.require_unit(self.test, self.unit, field="unit")
        rr = self.reference_range
        bounded = rr is not None and (rr.low is not None or rr.high is not None)
        if self.value is None and self.unit is not None and not bounded:
            raise ValueError("unit: given without a value or a reference range bound")
        if bounded and self.unit is None:
            raise ValueError("unit: a reference range bound needs the unit")
        if bounded and self.unit is not None:
            TERMINOLOGY.require_unit(self.test, self.unit, field="unit")
        return self


class DxaScore(_Model):
    site: Annotated[str, _key_of("dxa-site")]
    kind: Literal["T", "Z", "BMD"]
    value: Number
    unit: str | None = Field(
        default=None, description="g/cm2 for BMD; for T/Z scores '1' (or None, meaning '1')"
    )

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


class DxaScan(_Model):
    """One DXA visit: its date, label (e.g. "baseline", "1 year") and scores."""

    id: LocalId
    date: When
    scores: tuple[DxaScore, ...] = Field(min_length=1)
    conclusion: str | None = None

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen = set()
        for i, s in enumerate(self.scores):
            if (s.site, s.kind) in seen:
                raise ValueError(f"scores[{i}]: {s.site} {s.kind} given twice in one scan")
            seen.add((s.site, s.kind))
        return self


class ImagingStudy(_Model):
    """An imaging study and its report (X-ray, MRI, mammography, scintigraphy, ...)."""

    id: LocalId
    concepts: tuple[Annotated[str, _key_of("imaging")], ...] = Field(min_length=1)
    date: When
    findings: tuple[str, ...] = ()
    conclusion: str | None = None

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len(set(self.concepts)) != len(self.concepts):
            raise ValueError(f"concepts: {list(self.concepts)} names a study twice")
        return self


# --------------------------------------------------------------------------- conditions


class Fracture(_Model):
    """A fracture at one site (a vertebra, or a non-vertebral site such as the femoral neck).

    Active from ``onset``; ``healed`` is when it was found healed (the Condition then resolved).
    ``evidence`` names the imaging studies that show it.
    """

    id: LocalId
    site: Annotated[str, _key_of("vertebra", "fracture-site")]
    concept: Annotated[str, _key_of("condition")] = "vertebral-compression-fracture"
    onset: When
    recorded: When | None = None
    healed: When | None = None
    evidence: tuple[LocalId, ...] = ()
    note: str | None = None


class Diagnosis(_Named):
    """A diagnosis, or (``verification='refuted'``) a cause that was looked for and excluded."""

    _concept_kinds = ("condition",)

    id: LocalId
    concept: Annotated[str, _key_of("condition")] | None = None
    text: str | None = None
    verification: Literal["confirmed", "provisional", "differential", "refuted"] = "confirmed"
    clinical_status: (
        Literal["active", "recurrence", "relapse", "inactive", "remission", "resolved"] | None
    ) = None
    onset: When | None = None
    recorded: When | None = None
    abatement: When | None = None
    evidence: tuple[LocalId, ...] = ()
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.concept is None and not self.text:
            raise ValueError("a diagnosis needs a concept key or a text")
        if self.verification == "refuted" and self.clinical_status is not None:
            raise ValueError("clinical_status: must be empty for a refuted (excluded) diagnosis")
        if self.verification != "refuted" and self.clinical_status is None:
            raise ValueError("clinical_status: required unless the diagnosis is refuted")
        return self


# --------------------------------------------------------------------------- treatment & care


class Medication(_Model):
    """A medication taken: drug, dose, how often, route, and when."""

    id: LocalId
    drug: Annotated[str, _key_of("medication")]
    dose: Number | None = None
    dose_unit: str | None = None
    frequency: int | None = Field(default=None, ge=1, description="times per period")
    period: Number | None = None
    period_unit: Literal["h", "d", "wk", "mo", "a"] | None = None
    route: Annotated[str, _key_of("route")] | None = None
    start: When | None = None
    end: When | None = None
    status: Literal["active", "completed", "stopped", "on-hold", "intended"]
    reason: tuple[LocalId, ...] = ()
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.dose is not None:
            if self.dose <= 0:
                raise ValueError(f"dose: must be positive, got {self.dose}")
            if not self.dose_unit:
                raise ValueError("dose_unit: required with a dose")
        elif self.dose_unit is not None:
            raise ValueError("dose_unit: given without a dose")
        if (self.period is None) != (self.period_unit is None):
            raise ValueError("period and period_unit: give both or neither")
        if self.frequency is not None and self.period is None:
            raise ValueError("period: required with a frequency")
        if self.period is not None and self.period <= 0:
            raise ValueError(f"period: must be positive, got {self.period}")
        if self.start and self.end and _before(self.end, self.start):
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class Care(_Named):
    """A non-drug treatment: a procedure done (lactation stopped, orthosis worn) or planned care
    (diet, exercise, walking) that belongs in the care plan."""

    _concept_kinds = ("procedure",)

    id: LocalId
    kind: Literal["procedure", "plan"]
    concept: Annotated[str, _key_of("procedure")] | None = None
    text: str | None = None
    detail: str | None = None
    start: When | None = None
    end: When | None = None
    status: Literal["not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped"]

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.concept is None and not self.text:
            raise ValueError("care needs a concept key or a text")
        if self.kind == "procedure" and self.status == "scheduled":
            raise ValueError("status: a procedure is not 'scheduled' (use 'not-started')")
        return self


class FollowUpPhase(_Model):
    """Visits every ``every`` ``unit`` from ``start`` to ``end``."""

    every: int = Field(ge=1)
    unit: Literal["d", "wk", "mo", "a"]
    start: When
    end: When
    status: Literal["not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped"]
    description: str | None = None


class Outcome(_Model):
    """An assessment at a follow-up: a summary and the separate findings behind it."""

    date: When
    summary: str = Field(min_length=1)
    findings: tuple[str, ...] = ()


class FollowUp(_Model):
    phases: tuple[FollowUpPhase, ...] = ()
    outcomes: tuple[Outcome, ...] = ()


# --------------------------------------------------------------------------- the case


class Case(_Model):
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
    fractures: tuple[Fracture, ...] = ()
    diagnoses: tuple[Diagnosis, ...] = ()
    medications: tuple[Medication, ...] = ()
    care: tuple[Care, ...] = ()
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
        diagnosis_ids = {d.id for d in self.diagnoses} | {f.id for f in self.fractures}
        for i, med in enumerate(self.medications):
            for j, reason in enumerate(med.reason):
                if reason not in diagnosis_ids:
                    raise ValueError(
                        f"medications[{i}].reason[{j}]: no diagnosis or fracture {reason!r}"
                    )
        sites = [f.site for f in self.fractures]
        for i, f in enumerate(self.fractures):
            if sites.index(f.site) != i and any(
                g.onset == f.onset for g in self.fractures[:i] if g.site == f.site
            ):
                raise ValueError(f"fractures[{i}].site: {f.site} listed twice with one onset")
        return self


#: The case's lists of items, in model order: field name -> the model of its items.
SECTIONS: dict[str, type[_Model]] = {
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
