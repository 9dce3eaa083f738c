"""One word, one meaning (issue 17 item 4): "session" is the clinical word (an esketamine treatment session, as the
label and REMS use it); what a completed SMART launch leaves is a *login*. The SMART app and the storage interface
never use the clinical word for it again, in a name, a string, a comment or a template."""

from __future__ import annotations

import re
from pathlib import Path

import smart_app
import storage
from storage import Storage

#: The clinical uses that may appear in these packages, and the one storage name kept on purpose: the login table
#: is still called ``smart_session`` (renaming a table is unsafe during a rolling upgrade; see storage/schema.py).
_ALLOWED = re.compile(r"smart_session|session_induction_weeks|treatment session", re.IGNORECASE)
_WORD = re.compile(r"session", re.IGNORECASE)


def loose_uses(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each line using the word other than as allowed."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if _WORD.search(_ALLOWED.sub("", line))]


def _files(package: object) -> list[Path]:
    root = Path(package.__file__).parent  # type: ignore[attr-defined]
    return sorted(p for p in root.rglob("*") if p.suffix in {".py", ".html", ".mako"} and "__pycache__" not in p.parts)


def test_the_smart_app_and_the_storage_interface_say_login_for_a_login() -> None:
    files = _files(smart_app) + _files(storage)
    assert any(p.name == "logins.py" for p in files) and any(p.name == "review.html" for p in files)
    found = {f"{p.name}:{n}": line for p in files for n, line in loose_uses(p.read_text(encoding="utf-8"))}
    assert found == {}


def test_the_storage_interface_has_login_methods_and_no_session_ones() -> None:
    names = {n for n in dir(Storage) if not n.startswith("__")}
    assert {"put_login", "login", "end_login"} <= names
    assert not {n for n in names if "session" in n.lower()}


def test_the_smart_and_storage_settings_say_login() -> None:
    from ketamine_cds.settings import SmartSettings, StorageSettings

    fields = {*SmartSettings.model_fields, *StorageSettings.model_fields}
    assert "login_ttl_s" in fields and not {f for f in fields if "session" in f}


def test_the_scan_finds_the_old_names_and_allows_the_clinical_ones() -> None:
    old = 'async def put_session(self, sid):\n    """Insert or replace a session."""\n'
    assert [n for n, _ in loose_uses(old)] == [1, 2]
    kept = ('smart_login = Table("smart_session", metadata)\n'
            '{{ cite(policy.cite("session_induction_weeks")) }}\n'
            "# an esketamine treatment session\n")
    assert loose_uses(kept) == []
    assert loose_uses("smart_session_token = 1  # Session") != []
