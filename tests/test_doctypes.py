"""The shipped doctypes, the loader's file:line validation, the CLI and PDF/A rendering.

Needs no database: the doctypes are loaded the way `create_app` loads them (the policy's
roles, the installed channel plugins and their doctype settings).
"""

from __future__ import annotations

import io
import shutil
import textwrap
from pathlib import Path

import pikepdf
import pytest

from core.access.policy import Policy
from core.app import create_app, load_doctypes_and_channels
from core.cli import main as cli_main
from core.config import PROJECT_ROOT, Settings
from core.doctypes import (
    ARCHIVE_PRECONDITIONS,
    DocType,
    DoctypeError,
    format_date,
    render_html,
    route_description,
    sample_context,
)
from core.documents.render import render_document, render_pdf, sha256

SHIPPED = PROJECT_ROOT / "doctypes"
POLICIES = PROJECT_ROOT / "policies"
BASIS = "Offl. § 13 jf. fvl. § 13 første ledd nr. 1"

# Every document type DOMAIN.md / seed 000 names, mapped to its doctype key, with the
# archive rule the seed gives it: (key, archive, folder). Kept by hand on purpose: a
# doctype renamed or dropped must fail here, not be silently re-parsed away.
ROUTING_TABLE: dict[str, tuple[str, str, str | None]] = {
    "absence registered": ("fravaersvarsel", "always", "student"),
    "remark registered": ("anmerkningsvarsel", "always", "student"),
    "general information to many guardians": ("informasjon", "never", None),
    "letter with personal data": ("brev_personopplysninger", "always", "student"),
    "development talk invitation": ("innkalling_utviklingssamtale", "always", "student"),
    "parents' meeting invitation": ("innkalling_foreldremote", "never", None),
    "parents' meeting minutes": ("referat_foreldremote", "optional", "school"),
    "yes/no and multiple-choice questions": ("skjema_sporsmal", "optional", "student"),
    "note about one student, not sensitive": ("notat_elev", "never", None),
    "note about one student, sensitive": ("notat_elev_sensitiv", "always", "student"),
    "warning of lowered conduct mark": ("varsel_orden_atferd", "always", "student"),
    "answer to leave application": ("permisjonsvedtak", "always", "student"),
    "school place decision": ("vedtak_skoleplass", "always", "student"),
    "answer to SFO application": ("sfo_vedtak", "always", "student"),
    "answer to SFO change": ("sfo_endringsvedtak", "always", "student"),
    "answer to SFO termination": ("sfo_oppsigelsesvedtak", "always", "student"),
    "municipality's termination of SFO place": ("sfo_oppsigelse_kommunen", "always", "student"),
    "grades (term)": ("terminkarakterer", "optional", "student"),
    "moving notice": ("flyttemelding", "optional", "student"),
    "emergency SMS": ("beredskapsmelding", "never", None),
    "unannounced absence SMS (seed 003)": ("melding_uanmeldt_fravaer", "never", None),
}
ARCHIVE_ALWAYS: dict[str, str] = {
    "consent": "samtykke",
    "leave application": "permisjonssoknad",
    "leave decision": "permisjonsvedtak",
    "SFO application": "sfo_soknad",
    "SFO decision": "sfo_vedtak",
    "SFO change": "sfo_endring",
    "SFO change decision": "sfo_endringsvedtak",
    "SFO termination": "sfo_oppsigelse",
    "SFO termination decision": "sfo_oppsigelsesvedtak",
    "transport application": "skoleskyss_soknad",
    "transport decision": "skoleskyss_vedtak",
    "school place decision (not grade 1)": "vedtak_skoleplass",
    "invitation to a meeting at school": "innkalling_til_mote",
    "invitation to enrolment": "invitasjon_innskriving",
    "offer of intensive swimming week": "tilbud_intensiv_svomming",
    "warning of lowered conduct mark": "varsel_orden_atferd",
    "warning of missing basis for grading": "varsel_manglende_vurderingsgrunnlag",
    "welcome letter for grade 1": "velkommen_1_klasse",
}
# (key, folder, deadlines, preconditions)
ARCHIVE_OPTIONAL: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "term grades": ("terminkarakterer", "student", ("25.01", "25.06"), ("grades_checked",)),
    "final grades": ("standpunktkarakterer", "student", ("25.06",), ("grades_checked",)),
    "diploma": ("vitnemal", "student", ("25.06",), ("grades_checked",)),
    "final grade protocol": (
        "protokoll_avgangskarakterer",
        "school",
        ("25.06",),
        ("grades_checked",),
    ),
    "group lists": ("gruppeoversikt", "school", ("25.06",), ()),
    "message report per student": ("meldingsrapport", "student", ("25.06",), ()),
    "absence report per student": (
        "fravaersrapport",
        "student",
        ("25.06",),
        ("whole_school_year",),
    ),
    "remark report per student": (
        "anmerkningsrapport",
        "student",
        ("25.06",),
        ("conduct_mark_lowered",),
    ),
    "assessments": ("vurderinger", "student", ("25.01", "25.06"), ("all_assessments_closed",)),
}
# Sensitive documents of the seed's principle list (decisions under the Education Act,
# IEPs, evaluations, reports of concern): SvarUt only, or not sent from Tavle at all.
SENSITIVE = {
    "notat_elev_sensitiv",
    "varsel_orden_atferd",
    "vedtak_spesialundervisning",
    "individuell_opplaeringsplan",
    "arsrapport_spesialundervisning",
    "bekymringsmelding_barnevern",
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(POLICIES)


@pytest.fixture(scope="module")
def loaded(policy: Policy):  # type: ignore[no-untyped-def]
    return load_doctypes_and_channels(Settings(doctypes_dir=SHIPPED), policy)


@pytest.fixture(scope="module")
def doctypes(loaded) -> dict[str, DocType]:  # type: ignore[no-untyped-def]
    return loaded[0]


# --------------------------------------------------------------------------------------
# (1) The shipped doctypes


def test_shipped_doctypes_load_and_cover_the_domain(doctypes: dict[str, DocType]) -> None:
    assert len(doctypes) >= 30
    named = (
        {key for key, _, _ in ROUTING_TABLE.values()}
        | set(ARCHIVE_ALWAYS.values())
        | {key for key, *_ in ARCHIVE_OPTIONAL.values()}
        | SENSITIVE
    )
    missing = sorted(named - set(doctypes))
    assert not missing, f"doctypes named in DOMAIN.md but not shipped: {missing}"
    for key, doctype in doctypes.items():
        assert doctype.key == key == doctype.source.stem
        assert doctype.title and doctype.description, key
        assert (SHIPPED / doctype.template).is_file()


# The doctype keys API.md promises always exist, with what it says of each:
# (first channel, archive, folder, restricted).
API_DOCTYPES: dict[str, tuple[str, str, str | None, bool | None]] = {
    "innkalling_til_mote": ("svarut", "always", "student", None),
    "varsel_orden_atferd": ("svarut", "always", None, True),
    "permisjonsvedtak": ("svarut", "always", None, None),
    "informasjon": ("inapp", "never", None, None),
    "fravaersrapport": ("", "optional", None, None),
    "samtykke": ("", "always", None, None),
}


def test_the_doctype_keys_api_md_promises_exist_as_described(
    doctypes: dict[str, DocType],
) -> None:
    for key, (channel, archive, folder, restricted) in API_DOCTYPES.items():
        doctype = doctypes[key]
        assert doctype.archive == archive, key
        if channel:
            assert doctype.channels[0] == channel, key
        if folder:
            assert doctype.folder == folder, key
        if restricted is not None:
            assert doctype.restricted is restricted, key
    assert "email" in doctypes["informasjon"].channels
    assert "whole_school_year" in doctypes["fravaersrapport"].archive_preconditions


def test_shipped_routing_follows_the_seed(doctypes: dict[str, DocType]) -> None:
    for name, (key, archive, folder) in ROUTING_TABLE.items():
        doctype = doctypes[key]
        assert (doctype.archive, doctype.folder) == (archive, folder), name
    for name, key in ARCHIVE_ALWAYS.items():
        doctype = doctypes[key]
        assert doctype.archive == "always" and doctype.folder == "student", name
        assert doctype.archive_on in {"finalize", "send"}
        # A letter sent by SvarUt is archived as sent ("ferdigstilt og/eller sendt").
        if doctype.channels == ("svarut",):
            assert doctype.archive_on == "send", name
    for name, (key, folder, deadlines, preconditions) in ARCHIVE_OPTIONAL.items():
        doctype = doctypes[key]
        assert doctype.archive == "optional", name
        assert doctype.folder == folder, name
        assert doctype.archive_deadlines == deadlines, name
        assert doctype.archive_preconditions == preconditions, name
        assert doctype.archive_roles, name
    # Moving notices go to the archive with status R for further case handling there.
    assert doctypes["flyttemelding"].registry_status == "R"
    assert doctypes["beredskapsmelding"].channels == ("sms",)
    assert doctypes["beredskapsmelding"].permission == "emergency_sms:send"
    # Warnings are restricted ("settes som UO") and only go by SvarUt.
    for key in ("varsel_orden_atferd", "varsel_manglende_vurderingsgrunnlag"):
        assert doctypes[key].restricted and doctypes[key].channels == ("svarut",)
        assert doctypes[key].restriction_basis == BASIS
    # Forms and consents never carry sensitive data.
    for key in ("samtykke", "skjema_sporsmal"):
        assert doctypes[key].form and not doctypes[key].sensitive
        assert not any(f.sensitive for f in doctypes[key].fields)


def test_sensitive_doctypes_travel_only_by_a_channel_that_may_carry_them(
    loaded,  # type: ignore[no-untyped-def]
) -> None:
    doctypes, channels = loaded
    for key in SENSITIVE:
        doctype = doctypes[key]
        assert doctype.sensitive and doctype.restricted, key
        assert set(doctype.channels) <= {"svarut"}, key
    for doctype in doctypes.values():
        if doctype.sensitive:
            assert all(channels[name].may_carry_sensitive for name in doctype.channels)
            assert doctype.archive == "always", doctype.key
        if doctype.restricted:
            assert doctype.restriction_basis, doctype.key
    # The seed's four preconditions are all used by some doctype.
    used = {name for d in doctypes.values() for name in d.archive_preconditions}
    assert used == set(ARCHIVE_PRECONDITIONS)


# --------------------------------------------------------------------------------------
# (2) Validation errors name the file and the line

GOOD_YAML = textwrap.dedent(
    """\
    key: testbrev
    title: Testbrev
    description: Et brev til foresatte.
    template: testbrev.html.j2
    permission: document:create
    sensitive: false
    restricted: false
    channels: [svarut, email]
    recipients: guardians
    archive: always
    folder: student
    registry_status: J
    fields:
      - name: overskrift
        label: Overskrift
        type: text
        required: true
      - name: tekst
        label: Tekst
        type: multiline
        required: false
    """
)
GOOD_TEMPLATE = textwrap.dedent(
    """\
    {% extends "_base.html.j2" %}
    {% block tittel %}{{ fields.overskrift }}{% endblock %}
    {% block innhold %}
    {{ fields.tekst | avsnitt }}
    {% endblock %}
    """
)


def _doctype_dir(tmp_path: Path, yaml_text: str = GOOD_YAML, template: str = GOOD_TEMPLATE):
    """A doctype directory with the shipped shared templates and one test doctype."""
    directory = tmp_path / "doctypes"
    directory.mkdir()
    for shared in SHIPPED.glob("_*.j2"):
        shutil.copy(shared, directory / shared.name)
    (directory / "testbrev.yaml").write_text(yaml_text, encoding="utf-8")
    if template is not None:
        (directory / "testbrev.html.j2").write_text(template, encoding="utf-8")
    return directory


def _line(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line containing `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def _problems(directory: Path, policy: Policy) -> list[str]:
    with pytest.raises(DoctypeError) as caught:
        load_doctypes_and_channels(Settings(doctypes_dir=directory), policy)
    assert caught.value.problems
    return caught.value.problems


def test_the_test_doctype_itself_is_valid(tmp_path: Path, policy: Policy) -> None:
    doctypes, _ = load_doctypes_and_channels(Settings(doctypes_dir=_doctype_dir(tmp_path)), policy)
    assert list(doctypes) == ["testbrev"]


def _bad_yaml_cases() -> list[tuple[str, str, str, str]]:
    """(id, yaml text, needle marking the line, expected message part)."""
    cases = []
    text = GOOD_YAML.replace("[svarut, email]", "[svarut,\n  brevdue]")
    cases.append(("unknown channel", text, "brevdue", "unknown channel 'brevdue'"))
    text = GOOD_YAML.replace("sensitive: false", "sensitive: true").replace(
        "restricted: false", f'restricted: true\nrestriction_basis: "{BASIS}"'
    )
    text = text.replace("[svarut, email]", "\n  - svarut\n  - email")
    cases.append(("sensitive by email", text, "- email", "must not be sent by 'email'"))
    text = text.replace("- email", "- sms")
    cases.append(("sensitive by sms", text, "- sms", "must not be sent by 'sms'"))
    text = GOOD_YAML.replace("template: testbrev.html.j2", "template: finnes_ikke.html.j2")
    cases.append(("missing template", text, "template:", "template file 'finnes_ikke.html.j2'"))
    text = GOOD_YAML.replace("    required: false\n", "")
    cases.append(("field without required", text, "- name: tekst", "required key 'required'"))
    text = GOOD_YAML.replace("permission: document:create", "permission: dokument:lage")
    cases.append(("unknown permission resource", text, "permission:", "unknown resource"))
    text = GOOD_YAML.replace("permission: document:create", "permission: document:fly")
    cases.append(("unknown permission action", text, "permission:", "unknown action 'fly'"))
    text = GOOD_YAML.replace("archive: always", "archive: sometimes")
    cases.append(("unknown archive mode", text, "archive:", "unknown archive 'sometimes'"))
    text = GOOD_YAML.replace("restricted: false", "restricted: true")
    cases.append(("restricted without basis", text, "restricted:", "restriction_basis"))
    text = GOOD_YAML.replace("key: testbrev", "key: annet_navn")
    cases.append(("key is not the file name", text, "key:", "must equal the file name"))
    text = GOOD_YAML.replace("    type: multiline", "    type: tekstblokk")
    cases.append(("unknown field type", text, "type: tekstblokk", "unknown field type"))
    text = GOOD_YAML.replace("recipients: guardians", "recipients: guardians\nhemmelig: ja")
    cases.append(("unknown key", text, "hemmelig:", "unknown key 'hemmelig'"))
    text = GOOD_YAML.replace("title: Testbrev", "title: [Testbrev")
    cases.append(("YAML syntax error", text, "description:", "YAML syntax error"))
    return cases


@pytest.mark.parametrize(
    ("yaml_text", "needle", "message"),
    [case[1:] for case in _bad_yaml_cases()],
    ids=[case[0] for case in _bad_yaml_cases()],
)
def test_bad_doctype_is_reported_with_file_and_line(
    tmp_path: Path, policy: Policy, yaml_text: str, needle: str, message: str
) -> None:
    directory = _doctype_dir(tmp_path, yaml_text)
    problems = _problems(directory, policy)
    expected = f"{directory / 'testbrev.yaml'}:{_line(yaml_text, needle)}: "
    assert any(p.startswith(expected) and message in p for p in problems), problems


def test_template_using_an_undeclared_field_names_the_template_line(
    tmp_path: Path, policy: Policy
) -> None:
    template = GOOD_TEMPLATE.replace("{{ fields.tekst", "{{ fields.tekts")
    directory = _doctype_dir(tmp_path, template=template)
    problems = _problems(directory, policy)
    expected = f"{directory / 'testbrev.html.j2'}:{_line(template, 'tekts')}: "
    assert any(p.startswith(expected) and "fields.tekts" in p for p in problems), problems


def test_required_field_the_template_never_prints_is_an_error(
    tmp_path: Path, policy: Policy
) -> None:
    template = GOOD_TEMPLATE.replace("{{ fields.overskrift }}", "Fast overskrift")
    directory = _doctype_dir(tmp_path, template=template)
    problems = _problems(directory, policy)
    expected = f"{directory / 'testbrev.yaml'}:{_line(GOOD_YAML, '- name: overskrift')}: "
    assert any(p.startswith(expected) and "'overskrift' is never used" in p for p in problems)
    # A template reading the fields dynamically cannot be followed; no false alarm then.
    dynamic = textwrap.dedent(
        """\
        {% extends "_base.html.j2" %}
        {% block innhold %}
        {% for name, value in fields.items() %}<p>{{ name }}: {{ value }}</p>{% endfor %}
        {% endblock %}
        """
    )
    other = tmp_path / "dynamic"
    other.mkdir()
    load_doctypes_and_channels(Settings(doctypes_dir=_doctype_dir(other, template=dynamic)), policy)


def test_template_syntax_errors_are_found_in_templates_and_shared_files(
    tmp_path: Path, policy: Policy
) -> None:
    template = GOOD_TEMPLATE.replace("{% endblock %}\n", "{% endblok %}\n", 1)
    directory = _doctype_dir(tmp_path, template=template)
    problems = _problems(directory, policy)
    assert any(
        p.startswith(f"{directory / 'testbrev.html.j2'}:") and "syntax error" in p for p in problems
    ), problems
    macros = directory / "_felles.html.j2"
    (directory / "testbrev.html.j2").write_text(GOOD_TEMPLATE, encoding="utf-8")
    macros.write_text(macros.read_text(encoding="utf-8") + "\n{% macro x( %}\n")
    problems = _problems(directory, policy)
    assert any(p.startswith(f"{macros}:") and "syntax error" in p for p in problems), problems


def test_template_referring_to_a_missing_file_is_an_error(tmp_path: Path, policy: Policy) -> None:
    template = GOOD_TEMPLATE.replace("_base.html.j2", "_grunnmal.html.j2")
    directory = _doctype_dir(tmp_path, template=template)
    problems = _problems(directory, policy)
    expected = f"{directory / 'testbrev.html.j2'}:1: the template refers to '_grunnmal.html.j2'"
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path, policy: Policy) -> None:
    directory = _doctype_dir(tmp_path, GOOD_YAML.replace("[svarut, email]", "[brevdue]"))
    second = GOOD_YAML.replace("key: testbrev", "key: testbrev2").replace(
        "archive: always", "archive: sometimes"
    )
    (directory / "testbrev2.yaml").write_text(second, encoding="utf-8")
    problems = _problems(directory, policy)
    assert any("testbrev.yaml:" in p and "brevdue" in p for p in problems)
    assert any("testbrev2.yaml:" in p and "sometimes" in p for p in problems)


def test_an_empty_directory_is_an_error(tmp_path: Path, policy: Policy) -> None:
    problems = _problems(tmp_path, policy)
    assert problems == [f"{tmp_path}:0: no doctype files (*.yaml) found"]


# --------------------------------------------------------------------------------------
# (3) The server does not start on a bad doctype; the CLI


def test_create_app_refuses_a_bad_doctype_directory(tmp_path: Path) -> None:
    yaml_text = GOOD_YAML.replace("[svarut, email]", "[svarut,\n  brevdue]")
    directory = _doctype_dir(tmp_path, yaml_text)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", doctypes_dir=directory
    )
    with pytest.raises(DoctypeError) as caught:
        create_app(settings)
    line = _line(yaml_text, "brevdue")
    assert any(
        p.startswith(f"{directory / 'testbrev.yaml'}:{line}:") for p in caught.value.problems
    )


def test_cli_check_fails_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml_text = GOOD_YAML.replace("permission: document:create", "permission: document:fly")
    directory = _doctype_dir(tmp_path, yaml_text)
    monkeypatch.setenv("TAVLE_DOCTYPES_DIR", str(directory))
    with pytest.raises(SystemExit) as caught:
        cli_main(["doctypes", "check"])
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert f"{directory / 'testbrev.yaml'}:{_line(yaml_text, 'permission:')}: " in err
    assert "1 feil i dokumenttypene" in err


def test_cli_check_passes_on_the_shipped_directory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], doctypes
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TAVLE_DOCTYPES_DIR", str(SHIPPED))
    cli_main(["doctypes", "check"])  # returns normally: exit status 0
    assert capsys.readouterr().out.strip() == f"{len(doctypes)} dokumenttyper er gyldige."


def test_cli_route_prints_how_a_document_travels(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAVLE_DOCTYPES_DIR", str(SHIPPED))
    cli_main(["doctypes", "route", "varsel_orden_atferd"])
    out = capsys.readouterr().out
    assert out.startswith(
        "Varsel om fare for nedsatt karakter i orden eller atferd (varsel_orden_atferd)"
    )
    assert "1. SvarUt (digital post) (svarut)" in out
    assert "krever fødselsnummer" in out
    assert "2." not in out
    assert f"Unntatt offentlighet: ja, {BASIS}" in out
    assert "Arkivering: alltid, automatisk når dokumentet sendes" in out
    assert "Arkivmappe: elevmappe" in out
    assert "sikkerhetsnivå" not in out and "security_level=4" in out

    cli_main(["doctypes", "route", "fravaersrapport"])
    out = capsys.readouterr().out
    assert "Sendes ikke ut" in out
    assert "Frist for arkivering: 25. juni" in out
    assert f"Forutsetning for arkivering: {ARCHIVE_PRECONDITIONS['whole_school_year']}" in out


def test_cli_route_of_an_unknown_doctype_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAVLE_DOCTYPES_DIR", str(SHIPPED))
    with pytest.raises(SystemExit) as caught:
        cli_main(["doctypes", "route", "finnes_ikke"])
    assert caught.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Ukjent dokumenttype 'finnes_ikke'" in captured.err


def test_route_description_lists_channels_in_order(loaded) -> None:  # type: ignore[no-untyped-def]
    doctypes, channels = loaded
    lines = route_description(doctypes["notat_elev"], channels)
    first = next(i for i, line in enumerate(lines) if "(inapp)" in line)
    assert "(email)" in lines[first + 1]
    assert "Arkivering: aldri" in lines


# --------------------------------------------------------------------------------------
# (4) Every doctype renders to PDF/A-2b


def test_every_doctype_renders_to_pdf_a(doctypes: dict[str, DocType]) -> None:
    for key, doctype in sorted(doctypes.items()):
        context = sample_context(doctype)
        html = render_html(doctype, context)
        assert "None" not in html, key  # empty values print as nothing, not "None"
        if doctype.restricted:
            assert f"Unntatt offentlighet, {doctype.restriction_basis}" in html, key
        pdf = render_pdf(html)
        with pikepdf.open(io.BytesIO(pdf)) as document:
            meta = document.open_metadata()
            assert meta.pdfa_status == "2B", key
            assert meta.get("dc:title") == doctype.title, key
            assert len(document.pages) >= 1
            fonts = {
                str(font.get("/BaseFont"))
                for page in document.pages
                for font in (page.Resources.get("/Font") or {}).values()
            }
            # The cut-down letter fonts are the ones embedded (see render.py).
            assert fonts and all("Tavle-" in name for name in fonts), (key, fonts)


def test_letters_outside_the_cut_down_fonts_still_print(doctypes: dict[str, DocType]) -> None:
    doctype = doctypes["notat_elev"]
    context = sample_context(doctype)
    context["student"] = {**context["student"], "name": "Ωmega Ŋuolja Øvrebø"}
    pdf = render_pdf(render_html(doctype, context))
    with pikepdf.open(io.BytesIO(pdf)) as document:
        assert document.open_metadata().pdfa_status == "2B"
        fonts = {
            str(font.get("/BaseFont"))
            for font in (document.pages[0].Resources.get("/Font") or {}).values()
        }
    # Ŋ and Ø come from the letter font; Ω (Greek) from the installed DejaVu as fallback.
    assert any("Tavle-Sans" in name for name in fonts), fonts
    assert any("DejaVu" in name for name in fonts), fonts


def test_drafts_are_marked_and_optional_fields_may_be_empty(doctypes: dict[str, DocType]) -> None:
    doctype = doctypes["permisjonsvedtak"]
    context = sample_context(doctype, signed=False)
    context["fields"] = {
        f.name: value for f in doctype.fields if f.required for value in [context["fields"][f.name]]
    }
    html = render_html(doctype, context)
    assert "UTKAST" in html
    assert "None" not in html
    assert format_date(context["fields"]["fra_dato"]) in html


async def test_render_document_hashes_the_pdf(doctypes: dict[str, DocType]) -> None:
    doctype = doctypes["vedtak_spesialundervisning"]
    rendered = await render_document(doctype, sample_context(doctype))
    assert rendered.sha256 == sha256(rendered.pdf)
    assert "Vedtak om spesialundervisning" in rendered.html
    assert "Klageadgang" in rendered.html and "Statsforvalteren" in rendered.html
