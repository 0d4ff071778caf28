"""Synthetic PLAO / osteoporosis cases for load tests and benchmarks.

Every case is made up: identifiers say ``synthetic``, the comment says so, and no value comes
from a real patient. The same ``seed`` gives the same cases on every machine (``random.Random``
is seeded per case, so case *i* does not depend on how many came before it).

The cases vary what a real series would: which and how many vertebrae broke (sometimes a hip or
wrist instead), lab values and their flags, one to three DXA visits at two or three sites, the
bone drug (alendronate, teriparatide or denosumab), delivery mode, and follow-up length.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fhir_plao.case import Case
from fhir_plao.terminology import TERMINOLOGY

__all__ = ["SYNTHETIC_SYSTEM", "synth_case", "synth_cases"]

SYNTHETIC_SYSTEM = "http://fhir-plao.example.org/fhir/synthetic-case-id"

_VERTEBRAE = [f"vertebra-t{n}" for n in range(4, 13)] + [f"vertebra-l{n}" for n in range(1, 6)]
_OTHER_SITES = ["femoral-neck-bone", "distal-radius", "pelvis"]

#: (test, unit, low, high, typical value range): reference ranges of the kind labs print
_LABS = [
    ("phosphate", "mg/dL", "2.3", "4.7", (2.0, 5.6)),
    ("calcium", "mg/dL", "8.5", "10.5", (8.0, 10.8)),
    ("vitamin-d-25oh", "ng/mL", "30", None, (8.0, 45.0)),
    ("pth", "pg/mL", "15", "65", (10.0, 95.0)),
    ("alkaline-phosphatase", "U/L", "35", "105", (30.0, 160.0)),
]

#: drug, dose, dose unit, frequency, period, period unit, route
_BONE_DRUGS = [
    ("alendronate-70mg-tablet", "70", "mg", 1, "1", "wk", "oral"),
    ("teriparatide", "20", "ug", 1, "1", "d", "subcutaneous"),
    ("denosumab", "60", "mg", 1, "6", "mo", "subcutaneous"),
]


def synth_cases(n: int, seed: int = 0) -> Iterator[Case]:
    """``n`` synthetic cases, lazily (memory stays flat however large ``n`` is)."""
    if n < 0:
        raise ValueError(f"n must be 0 or more, not {n}")
    for i in range(n):
        yield synth_case(i, seed)


def synth_case(i: int, seed: int = 0) -> Case:
    """Synthetic case number ``i`` of the series ``seed``."""
    rng = random.Random(f"fhir-plao/{seed}/{i}")
    return Case.model_validate(_case_data(rng, i, seed))


def _d(value: float, places: int = 1) -> Decimal:
    return Decimal(f"{value:.{places}f}")


def _iso(day: date) -> str:
    return day.isoformat()


def _case_data(rng: random.Random, i: int, seed: int) -> dict[str, Any]:
    age = rng.randint(21, 41)
    delivery = date(2018, 1, 1) + timedelta(days=rng.randint(0, 6 * 365))
    presented = delivery + timedelta(days=rng.randint(20, 150))
    start = presented + timedelta(days=rng.randint(1, 10))
    years = rng.choice([1, 2, 2, 3])
    end = start + timedelta(days=365 * years)
    data: dict[str, Any] = {
        "comment": f"SYNTHETIC case {i} of series {seed}, made by fhir-plao synth: not a patient.",
        "patient": {
            "identifier_system": SYNTHETIC_SYSTEM,
            "identifier": f"synth-{seed}-{i:07d}",
            "birth_date": str(presented.year - age),
            "sex": "female",
        },
    }
    cesarean = rng.random() < 0.4
    data["pregnancies"] = [
        {
            "id": "pregnancy-1",
            "gravida": rng.choice([1, 1, 2, 3]),
            "delivery": {
                "date": _iso(delivery),
                "mode": "cesarean-section",
                "anaesthesia": "combined-spinal-epidural",
            }
            if cesarean
            else None,
        }
    ]
    data["lactations"] = [
        {"pregnancy": "pregnancy-1", "start": _iso(delivery), "stopped": _iso(start)}
    ]
    height = rng.randint(150, 182)
    weight = rng.randint(45, 85)
    bmi = Decimal(weight) / (Decimal(height) / 100) ** 2
    day = _iso(presented)
    data["vitals"] = [
        {"id": "height", "kind": "body-height", "value": height, "unit": "cm", "date": day},
        {"id": "weight", "kind": "body-weight", "value": weight, "unit": "kg", "date": day},
        {"id": "bmi", "kind": "bmi", "value": bmi.quantize(Decimal("0.1")), "unit": "kg/m2",
         "date": day},
    ]  # fmt: skip
    data["lab_panels"] = [{"id": "labs-1", "concept": "lab-workup", "date": _iso(presented)}]
    data["labs"] = [_lab(rng, n, presented, *spec) for n, spec in enumerate(_LABS)]

    scans = []
    sites = ["lumbar-spine-l1-l4", rng.choice(["femoral-neck", "total-hip"])]
    t, z = rng.uniform(-4.0, -1.0), rng.uniform(-4.0, -0.5)
    for visit in range(rng.randint(1, 3)):
        when = presented + timedelta(days=2 + 365 * visit)
        scores = []
        for site in sites:
            scores.append({"site": site, "kind": "T", "value": _d(t + rng.uniform(-0.3, 0.6))})
            scores.append({"site": site, "kind": "Z", "value": _d(z + rng.uniform(-0.3, 0.6))})
            if rng.random() < 0.3:
                bmd = _d(rng.uniform(0.6, 1.1), 3)
                scores.append({"site": site, "kind": "BMD", "value": bmd, "unit": "g/cm2"})
        scans.append({"id": f"dxa-{visit + 1}", "date": _iso(when), "scores": scores})
        t, z = t + rng.uniform(0.0, 0.5), z + rng.uniform(0.0, 0.5)
    data["dxa_scans"] = scans

    mri_day = presented + timedelta(days=1)
    data["imaging"] = [
        {"id": "mri-1", "concepts": ["mri-thoracic-spine", "mri-lumbar-spine"],
         "date": _iso(mri_day), "conclusion": "Compression fractures."},
        {"id": "mri-last", "concepts": ["mri-thoracic-spine", "mri-lumbar-spine"],
         "date": _iso(end), "conclusion": "Control MRI."},
    ]  # fmt: skip
    if rng.random() < 0.85:
        sites_broken = sorted(rng.sample(_VERTEBRAE, rng.randint(1, 8)), key=_VERTEBRAE.index)
    else:
        sites_broken = [rng.choice(_OTHER_SITES)]
    healed = rng.random() < 0.7
    data["fractures"] = [
        {
            "id": f"fracture-{n + 1}",
            "site": site,
            "concept": "vertebral-compression-fracture" if site in _VERTEBRAE else "osteoporosis",
            "onset": _iso(delivery + timedelta(days=rng.randint(0, 40)))[:7],
            "healed": _iso(end) if healed else None,
            "evidence": ["mri-1", "mri-last"] if healed else ["mri-1"],
        }
        for n, site in enumerate(sites_broken)
    ]
    data["diagnoses"] = [
        {"id": "dx-main", "concept": rng.choice(["plao", "plao", "osteoporosis"]),
         "clinical_status": "remission" if healed else "active", "onset": _iso(presented),
         "evidence": ["mri-1"]},
        {"id": "dx-back-pain", "concept": "low-back-pain", "clinical_status": "resolved",
         "onset": _iso(delivery), "abatement": _iso(end)},
    ]  # fmt: skip
    for cause in rng.sample(_excluded(), 3):
        data["diagnoses"].append(
            {"id": f"excluded-{cause}", "concept": cause, "verification": "refuted"}
        )
    drug, dose, unit, freq, period, period_unit, route = rng.choice(_BONE_DRUGS)
    data["medications"] = [
        {"id": "med-calcium", "drug": "calcium-supplement", "dose": rng.choice([1000, 1200]),
         "dose_unit": "mg", "frequency": 1, "period": 1, "period_unit": "d", "route": "oral",
         "start": _iso(start), "end": _iso(end), "status": "completed", "reason": ["dx-main"]},
        {"id": "med-vitamin-d", "drug": "cholecalciferol", "dose": rng.choice([1000, 2000, 4000]),
         "dose_unit": "[IU]", "frequency": 1, "period": 1, "period_unit": "d", "route": "oral",
         "start": _iso(start), "end": _iso(end), "status": "completed", "reason": ["dx-main"]},
        {"id": "med-bone", "drug": drug, "dose": Decimal(dose), "dose_unit": unit,
         "frequency": freq, "period": Decimal(period), "period_unit": period_unit,
         "route": route, "start": _iso(start), "end": _iso(end), "status": "completed",
         "reason": ["dx-main"]},
    ]  # fmt: skip
    data["care"] = [
        {"id": "care-stop-lactation", "kind": "procedure", "concept": "lactation-suppression",
         "start": _iso(start), "status": "completed"},
        {"id": "care-walking", "kind": "plan", "concept": "walking-exercise",
         "start": _iso(start), "status": "completed"},
    ]  # fmt: skip
    data["follow_up"] = {
        "phases": [
            {"every": 3, "unit": "mo", "start": _iso(start)[:7], "end": _iso(end)[:7],
             "status": "completed"}
        ],
        "outcomes": [
            {"date": _iso(end), "summary": "Fractures healed." if healed else "Follow-up ongoing."}
        ],
    }  # fmt: skip
    return data


def _lab(
    rng: random.Random,
    n: int,
    day: date,
    test: str,
    unit: str,
    low: str,
    high: str | None,
    typical: tuple[float, float],
) -> dict[str, Any]:
    value = _d(rng.uniform(*typical))
    flag = "L" if value < Decimal(low) else "H" if high and value > Decimal(high) else "N"
    text = f"{low}-{high} {unit}" if high else f">{low} {unit}"
    return {
        "id": f"lab-{n + 1}",
        "test": test,
        "panel": "labs-1",
        "date": _iso(day),
        "value": value,
        "unit": unit,
        "reference_range": {
            "low": Decimal(low),
            "high": Decimal(high) if high else None,
            "text": text,
        },
        "interpretation": flag,
    }


def _excluded() -> list[str]:
    """Condition keys of the secondary causes a work-up excludes (those in the code table)."""
    wanted = [
        "smoking", "alcohol-use", "rheumatoid-arthritis", "celiac-disease", "hyperthyroidism",
        "hypothyroidism", "corticosteroid-use", "anorexia-nervosa", "diabetes-mellitus",
    ]  # fmt: skip
    return [k for k in wanted if k in TERMINOLOGY]
