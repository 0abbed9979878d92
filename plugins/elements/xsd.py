"""The official Fiks Arkiv V1 schemas, read from where they live (never copied into the
project): `TAVLE_FIKS_ARKIV_XSD_DIR`, by default `../shared/specs/fiks-arkiv` next to the
project root when that folder exists."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from lxml import etree

from core.config import PROJECT_ROOT

DEFAULT_XSD_DIR = (PROJECT_ROOT.parent / "shared" / "specs" / "fiks-arkiv").resolve()


def xsd_dir() -> Path | None:
    """The schema folder, or None when it is not there."""
    configured = os.environ.get("TAVLE_FIKS_ARKIV_XSD_DIR")
    path = Path(configured) if configured else DEFAULT_XSD_DIR
    return path if path.is_dir() else None


@cache
def _load(path: str) -> etree.XMLSchema:
    # The schemas import each other by relative schemaLocation: parse from the file path.
    return etree.XMLSchema(etree.parse(path))


def schema(name: str) -> etree.XMLSchema:
    """The compiled schema `name` (a file in the schema folder). Raises FileNotFoundError
    naming the setting when the folder or the file is missing."""
    folder = xsd_dir()
    if folder is None:
        raise FileNotFoundError(
            "Fiks Arkiv-skjemaene finnes ikke: sett TAVLE_FIKS_ARKIV_XSD_DIR "
            f"(standard {DEFAULT_XSD_DIR})"
        )
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} finnes ikke")
    return _load(str(path))


def validation_errors(xml: bytes, name: str) -> list[str]:
    """Every schema violation of `xml` against schema `name`, as "line N: message"."""
    try:
        document = etree.fromstring(xml)
    except etree.XMLSyntaxError as error:
        return [f"ugyldig XML: {error}"]
    compiled = schema(name)
    if compiled.validate(document):
        return []
    return [f"linje {e.line}: {e.message}" for e in compiled.error_log]
