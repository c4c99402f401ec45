"""The password policy, applied wherever a password is set: creating a user, an admin's reset,
and the bootstrap admin.

- at least MIN_PASSWORD_LENGTH (8) and at most MAX_PASSWORD_LENGTH (256) characters; the upper
  bound is checked before anything is hashed, so a megabyte "password" costs nothing;
- not a guessable password: the shipped list common_passwords.txt (made offline by
  scripts/make_common_passwords.py) is compared against the password's core, i.e. in lower case,
  without leading and trailing digits, spaces and symbols, and with leetspeak undone, so
  "Summer2024!" and "P@ssw0rd1" are refused along with "summer" and "password";
- not the user name (with the same variants).

Long passphrases of ordinary words pass: the core is the whole phrase, not one word of it.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from app.web.core.security import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from app.web.errors import InvalidInput

_LIST = Path(__file__).with_name("common_passwords.txt")
_SYMBOLS = string.punctuation + string.whitespace
_EDGES = string.digits + _SYMBOLS
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list, read once per process."""
    lines = _LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _cores(password: str) -> Iterator[str]:
    """The password and the forms of it that the list is compared with."""
    lower = password.lower()
    yield lower
    for text in (lower, lower.translate(_LEET)):
        for edges in (_EDGES, _SYMBOLS):  # "Dragon123!" → "dragon"; "trustno1!" → "trustno1"
            core = text.strip(edges)
            if core:
                yield core
                yield core.translate(_LEET)
                yield "".join(ch for ch in core if ch not in _EDGES)  # "pass-word" and "pass word"


def length_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password must have at most {MAX_PASSWORD_LENGTH} characters"
    return None


def check_password(password: str, username: str | None = None) -> None:
    """Raise InvalidInput (422) with the reason when ``password`` breaks the policy."""
    problem = length_problem(password)
    if problem:
        raise InvalidInput(problem)
    cores = set(_cores(password))
    if username and cores & set(_cores(username)):
        raise InvalidInput("the password must not be the user name, with or without digits or symbols")
    if cores & common_passwords():
        raise InvalidInput(
            "this password is on the list of common, easily guessed passwords; "
            "choose another (a few unrelated words make a strong one)"
        )
