"""What other systems write, kept as they wrote it: codings, concepts, quantities and values.

The case names what it *recognises* by code-table keys. What it does not recognise is still
part of the case: a :class:`Concept` holds a source's CodeableConcept (every coding with its
system, version, code and display, and the text) and a :class:`Value` any R4 ``value[x]`` that
an Observation may carry. Writing them back gives the same JSON.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from fhir_plao._types import INT32_MAX, INT32_MIN, LocalId, Model, Number, When, in_order

__all__ = [
    "CodedObservation",
    "Coding",
    "Component",
    "Concept",
    "ObservedRange",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Value",
]

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
#: the categories we write, with the displays of their HL7 code systems
OBSERVATION_CATEGORY_DISPLAY = {
    "vital-signs": "Vital Signs",
    "laboratory": "Laboratory",
    "imaging": "Imaging",
    "exam": "Exam",
    "social-history": "Social History",
}
CONDITION_CATEGORY_DISPLAY = {
    "encounter-diagnosis": "Encounter Diagnosis",
    "problem-list-item": "Problem List Item",
}
DIAGNOSTIC_SERVICE_DISPLAY = {"LAB": "Laboratory", "RAD": "Radiology"}
_DISPLAYS = {
    OBSERVATION_CATEGORY: OBSERVATION_CATEGORY_DISPLAY,
    CONDITION_CATEGORY: CONDITION_CATEGORY_DISPLAY,
    DIAGNOSTIC_SERVICE: DIAGNOSTIC_SERVICE_DISPLAY,
}

#: how we show a UCUM unit where its code is not what a reader expects (Quantity.unit)
UNIT_DISPLAY = {"[IU]": "IU", "1": "1"}
#: how we show the unit '1' of a T- or Z-score
SCORE_UNIT_TEXT = {"T": "T-score", "Z": "Z-score"}


def shown_unit(code: str) -> str:
    """The Quantity.unit we write beside a UCUM code."""
    return UNIT_DISPLAY.get(code, code)


OBSERVATION_STATUSES = (
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
)
ObservationStatus = Literal[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
]


#: FHIR's code and uri primitives (no surrounding or doubled whitespace; no whitespace at all)
_CODE = r"^[^\s]+(\s[^\s]+)*$"
_URI = r"^\S+$"


class Coding(Model):
    """One coding as the source wrote it."""

    system: str | None = Field(default=None, pattern=_URI)
    version: str | None = None
    code: str | None = Field(default=None, pattern=_CODE)
    display: str | None = None
    user_selected: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.code is None and self.display is None and self.system is None:
            raise ValueError("a coding needs a system, a code or a display")
        return self


class Concept(Model):
    """A CodeableConcept as the source wrote it: its codings in order, and its text."""

    codings: tuple[Coding, ...] = ()
    text: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.codings and self.text is None:
            raise ValueError("a concept needs a coding or a text")
        return self

    def has(self, system: str, code: str) -> bool:
        return any(c.system == system and c.code == code for c in self.codings)

    @classmethod
    def of_key(cls, key: str, text: str | None = None) -> Concept:
        """The concept as we write a code-table key (``text`` overriding the table's)."""
        from fhir_plao.terminology import TERMINOLOGY

        concept = TERMINOLOGY.concept(key)
        codings = tuple(
            Coding(system=c.system, code=c.code, display=c.display or None) for c in concept.codings
        )
        return cls(codings=codings, text=text if text is not None else concept.text)

    def recognised(self, *kinds: str) -> str | None:
        """The code-table key of ``kinds`` (any, when none is given) this concept names: by
        its codings, or, having none, by the text of a text-only concept."""
        from fhir_plao.terminology import TERMINOLOGY

        kinds = kinds or TERMINOLOGY.kinds()
        if self.codings:
            return TERMINOLOGY.key_for_codings(((c.system, c.code) for c in self.codings), kinds)
        key = TERMINOLOGY.key_for_text(self.text, *kinds)
        if key is not None and not TERMINOLOGY.concept(key).codings:
            return key
        return None


class Quantity(Model):
    """A Quantity as written: value, comparator, the unit as shown, and the coded unit."""

    value: Number | None = None
    comparator: Literal["<", "<=", ">=", ">"] | None = None
    unit: str | None = None
    system: str | None = Field(default=None, pattern=_URI)
    code: str | None = Field(default=None, pattern=_CODE)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.value is None and self.unit is None and self.code is None:
            raise ValueError("a quantity needs a value or a unit")
        if self.code is not None and self.system is None:
            raise ValueError("system: a coded unit needs its system (qty-3)")
        return self


class Range(Model):
    low: Quantity | None = None
    high: Quantity | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low is None and self.high is None:
            raise ValueError("a range needs low or high")
        lo, hi = self.low, self.high
        if lo and hi and lo.value is not None and hi.value is not None and lo.value > hi.value:
            raise ValueError(f"low {lo.value} is above high {hi.value}")
        return self


class Ratio(Model):
    numerator: Quantity | None = None
    denominator: Quantity | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.numerator is None and self.denominator is None:
            raise ValueError("a ratio needs a numerator or a denominator")
        return self


class Period(Model):
    start: When | None = None
    end: When | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start is None and self.end is None:
            raise ValueError("a period needs a start or an end")
        in_order(self.start, self.end)
        return self


_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?$"


class Value(Model):
    """An Observation's ``value[x]``: exactly one of the R4 types."""

    quantity: Quantity | None = None
    concept: Concept | None = None
    string: str | None = None
    boolean: bool | None = None
    integer: int | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)
    range: Range | None = None
    ratio: Ratio | None = None
    period: Period | None = None
    date_time: When | None = None
    time: str | None = Field(default=None, pattern=_TIME)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a value is exactly one of its kinds (given: {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)


class ObservedRange(Model):
    """A reference range as written (low, high, its type, whom it applies to, age, text)."""

    low: Quantity | None = None
    high: Quantity | None = None
    type: Concept | None = None
    applies_to: tuple[Concept, ...] = ()
    age: Range | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.low is None and self.high is None and self.text is None:
            raise ValueError("a reference range needs low, high or text (obs-3)")
        return self


class Component(Model):
    """One component of an Observation (a blood pressure's systolic part, say)."""

    code: Concept
    value: Value | None = None
    data_absent: Concept | None = None
    interpretation: tuple[Concept, ...] = ()
    reference_ranges: tuple[ObservedRange, ...] = ()

    @model_validator(mode="after")
    def _value_or_reason(self) -> Self:
        if self.value is not None and self.data_absent is not None:
            raise ValueError("data_absent: only when there is no value (obs-6)")
        return self


class CodedObservation(Model):
    """An Observation the case has no dedicated section for, kept as its source coded it.

    ``concept`` is the code-table key it is recognised as, if any (a gestational age, a
    gravida count); ``code`` is the source's own CodeableConcept and is what is written back.
    ``members`` are the ids of the observations it groups (``hasMember``); ``report`` is the
    lab panel or imaging study whose report lists it.
    """

    id: LocalId
    concept: str | None = None
    code: Concept
    status: ObservationStatus = "final"

    @model_validator(mode="before")
    @classmethod
    def _recognise(cls, data: object) -> object:
        # what the code is recognised as is the code table's to say: filled in when left out
        if isinstance(data, dict) and data.get("concept") is None and data.get("code"):
            code = Concept.model_validate(data["code"])
            return {**data, "concept": code.recognised()}
        return data

    category: tuple[Concept, ...] = ()
    date: When | None = None
    period: Period | None = None
    issued: str | None = None
    value: Value | None = None
    data_absent: Concept | None = None
    interpretation: tuple[Concept, ...] = ()
    reference_ranges: tuple[ObservedRange, ...] = ()
    body_site: Concept | None = None
    method: Concept | None = None
    components: tuple[Component, ...] = ()
    members: tuple[LocalId, ...] = ()
    report: LocalId | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.value is not None and self.data_absent is not None:
            raise ValueError("data_absent: only when there is no value (obs-6)")
        if self.date is not None and self.period is not None:
            raise ValueError("date and period: one effective time, not both")
        if self.concept != self.code.recognised():
            raise ValueError(
                f"concept: the code names {self.code.recognised()!r}, not {self.concept!r} "
                "(the code table decides what a code is recognised as)"
            )
        return self


def our_category(system: str, code: str) -> tuple[Concept, ...]:
    """The one category we write for an item of a section (``system``'s ``code``)."""
    return (Concept(codings=(Coding(system=system, code=code, display=_DISPLAYS[system][code]),)),)
