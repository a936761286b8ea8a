"""The typed profile model: KubeSpawner's ``profile_list`` as it is, plus HPC field types.

A profile list is validated once into :class:`ProfileList` (at hub start with
:func:`~jupyterhub_hpc.profiles.check_profiles`, and again whenever a callable
produces one); every error names the key that is wrong, e.g.
``profile_list[2].profile_options.cpus.max``.

Accepted unchanged from KubeSpawner: ``display_name``, ``slug`` (derived from the
display name when missing), ``description``, ``default``, ``kubespawner_override``,
``profile_options`` with ``choices`` and ``unlisted_choice``, a list, a dict (sorted
by key) or a callable. Added: the backend-neutral ``spawner_override``, a
per-profile ``backend``/``cluster``, visibility (``allowed_groups``,
``allowed_users``) on profiles, options, choices and write-ins, typed options
(``integer``, ``memory``, ``walltime``, ``partition``, ``account``, ``qos``,
``reservation``, ``environment``, ``text``) that set fields of the job request, software
``modules`` (:mod:`.modulespec`), and ``when`` conditions between options.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..request import (
    NAME_PATTERN,
    NAME_RULE,
    JobRequest,
    parse_memory_mib,
    parse_walltime_seconds,
    parse_whole_number,
)
from .modulespec import ModulesFields

__all__ = [
    "JOB_FIELDS",
    "Choice",
    "Condition",
    "Option",
    "Profile",
    "ProfileConfigError",
    "ProfileList",
    "UnlistedChoice",
    "forbidden_character",
    "ignored_key_warnings",
    "parse_profile_list",
    "slugify",
]

#: Fields of the job request that profiles may set (``job_name`` stays the admin's).
JOB_FIELDS = frozenset(JobRequest.model_fields) - {"job_name"}

#: Slugs and option keys appear in form field names (``profile-option-<slug>--<key>``):
#: no ``--`` inside, no spaces, nothing that needs escaping in a URL.
SLUG_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.]|-(?!-))*$")
#: The write-in suffix of KubeSpawner's wire format.
UNLISTED_SUFFIX = "--unlisted-choice"
#: The choice key a form posts when the write-in is selected.
UNLISTED_KEY = "unlisted-choice"
#: Characters refused in free text that no admin pattern allows: controls (Cc: C0, DEL, C1
#: such as U+0085), format characters (Cf: bidi overrides such as U+202E, zero-width U+200B,
#: U+FEFF), surrogates (Cs) and the line and paragraph separators U+2028, U+2029 (Zl, Zp).
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _bmp_class(categories: frozenset[str]) -> str:
    """A regex class (``\\uXXXX`` ranges, read alike by Python and browsers) of the BMP
    characters in ``categories``: the form's and the schema's approximation of the check."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x10000):
        if unicodedata.category(chr(code)) in categories:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


#: Free text without an admin pattern: 1-256 characters, none of FORBIDDEN_CATEGORIES in the
#: BMP (surrogates are left out: a browser's non-Unicode regex would refuse every emoji). The
#: server checks every character's category, also beyond the BMP (forbidden_character).
DEFAULT_TEXT_PATTERN = f"[^{_bmp_class(FORBIDDEN_CATEGORIES - {'Cs'})}]{{1,256}}"


def forbidden_character(text: str) -> str | None:
    """The first character of ``text`` in :data:`FORBIDDEN_CATEGORIES`, as ``U+XXXX``, or None.

    >>> forbidden_character("my-env"), forbidden_character("a\u202eb"), forbidden_character("x\u2028")
    (None, 'U+202E', 'U+2028')
    """
    for ch in text:
        if unicodedata.category(ch) in FORBIDDEN_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


OptionType = Literal[
    "choice",
    "environment",
    "partition",
    "account",
    "qos",
    "reservation",
    "integer",
    "memory",
    "walltime",
    "text",
    "modules",
]
#: Option types whose free-text value is a scheduler name.
NAME_TYPES = frozenset({"partition", "account", "qos", "reservation"})
#: Option types whose value is one of ``choices`` (or a write-in).
CHOICE_TYPES = frozenset({"choice", "environment", "partition", "account", "qos"})
#: The job-request field a typed option sets unless ``job_field`` says otherwise.
DEFAULT_JOB_FIELD: dict[str, str] = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "reservation": "reservation",
    "memory": "memory",
    "walltime": "walltime",
}


def _regex(value: str | None) -> str | None:
    """A pattern from the configuration, refused (naming why) when it does not compile."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
    return value


class ProfileConfigError(ValueError):
    """The admin's profile configuration is invalid; ``key`` is the dotted path of the culprit."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def slugify(text: str) -> str:
    """A slug from a display name, as KubeSpawner derives missing slugs.

    >>> slugify("DataScience - Medium instance (GPUx2)")
    'datascience-medium-instance-gpux2'
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "profile"


class _Strict(BaseModel):
    """Unknown keys are errors (a typo must not silently do nothing)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class _Visible(_Strict):
    allowed_groups: list[str] | None = None
    allowed_users: list[str] | None = None

    def visible_to(self, user: str, groups: frozenset[str]) -> bool:
        """Visibility is authorization: hidden items are refused on every path."""
        if self.allowed_groups is None and self.allowed_users is None:
            return True
        return user in (self.allowed_users or []) or bool(groups.intersection(self.allowed_groups or []))


class _Overrides(_Visible):
    kubespawner_override: dict[str, Any] = Field(default_factory=dict)
    spawner_override: dict[str, Any] = Field(default_factory=dict)

    @property
    def overrides(self) -> dict[str, Any]:
        """``kubespawner_override`` then ``spawner_override`` (the same thing under two names)."""
        return {**self.kubespawner_override, **self.spawner_override}


class Choice(_Overrides):
    """One listed choice of an option."""

    display_name: str = ""
    description: str = ""
    slug: str | None = None
    default: bool = False


class UnlistedChoice(_Overrides):
    """KubeSpawner's free-form write-in; ``validation_regex`` must match the *whole* value."""

    enabled: bool = False
    display_name: str = ""
    display_name_in_choices: str = "Other..."
    description_in_choices: str = ""
    validation_regex: str | None = None
    validation_message: str = ""

    @field_validator("validation_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return _regex(value)


class Condition(_Strict):
    """``when`` clause: the option applies only while another option's value matches."""

    min: int | None = None
    max: int | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def holds(self, value: object) -> bool:
        if self.min is not None or self.max is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                return False
            if self.min is not None and value < self.min:
                return False
            if self.max is not None and value > self.max:
                return False
        if self.in_ is not None and str(value) not in self.in_:
            return False
        return not (self.not_in is not None and str(value) in self.not_in)

    def describe(self, key: str) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{key} is at least {self.min}")
        if self.max is not None:
            parts.append(f"{key} is at most {self.max}")
        if self.in_ is not None:
            parts.append(f"{key} is one of {', '.join(self.in_)}")
        if self.not_in is not None:
            parts.append(f"{key} is not {', '.join(self.not_in)}")
        return " and ".join(parts) or "always"


Scalar = int | str


class Option(_Overrides, ModulesFields):
    """A sub-option of a profile: a list of choices (KubeSpawner), a typed HPC field, or
    software modules (``modules``: the keys of :class:`~.modulespec.ModulesFields`).

    Overrides may use ``{value}`` in strings; it is replaced by the validated value.
    """

    display_name: str = ""
    description: str = ""
    type: OptionType = "choice"
    choices: dict[str, Choice] = Field(default_factory=dict)
    unlisted_choice: UnlistedChoice = Field(default_factory=UnlistedChoice)
    min: Scalar | None = None
    max: Scalar | None = None
    step: int = Field(default=1, ge=1)
    default: Scalar | None = None
    pattern: str | None = None
    placeholder: str = ""
    job_field: str | None = None
    when: dict[str, Condition] = Field(default_factory=dict)
    remember: bool = True
    #: fancy-profiles UI key, accepted and passed to templates unchanged
    dynamic_image_building: dict[str, Any] | None = None

    @field_validator("job_field")
    @classmethod
    def _known_field(cls, value: str | None) -> str | None:
        if value is not None and value not in JOB_FIELDS:
            raise ValueError(f"unknown job field {value!r}; known: {', '.join(sorted(JOB_FIELDS))}")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        return _regex(value)

    @model_validator(mode="after")
    def _consistent(self) -> Option:
        if self.type in ("choice", "environment"):
            if not self.choices and not self.unlisted_choice.enabled:
                raise ValueError("an option needs choices or an enabled unlisted_choice")
        if self.type in ("integer", "memory", "walltime"):
            if self.choices:
                raise ValueError(f"a {self.type} option takes min/max/default, not choices")
            low, high = self.bound("min"), self.bound("max")
            if low is not None and high is not None and low > high:
                raise ValueError("min is larger than max")
            if self.default is not None:
                self.parse_number(self.default)
        if self.type == "integer" and self.job_field not in (None, "cpus", "nodes", "gpus"):
            raise ValueError("an integer option sets cpus, nodes or gpus (job_field)")
        return self

    # -- typed values -------------------------------------------------------------------
    @property
    def target_field(self) -> str | None:
        """The job-request field this option's value sets, if any."""
        return self.job_field or DEFAULT_JOB_FIELD.get(self.type)

    def parse_number(self, value: object) -> int:
        """An integer, MiB or seconds for the numeric types (raises ``ValueError``)."""
        if self.type == "memory":
            return parse_memory_mib(value)
        if self.type == "walltime":
            return parse_walltime_seconds(value)
        return parse_whole_number(value)

    def bound(self, which: Literal["min", "max"]) -> int | None:
        raw = self.min if which == "min" else self.max
        if raw is None:
            if which == "min" and self.type == "integer":
                return 0 if self.target_field == "gpus" else 1
            return None
        try:
            return self.parse_number(raw)
        except ValueError as exc:
            raise ValueError(f"{which}: {exc}") from None

    def text_pattern(self) -> str:
        """The full-match pattern of a free-text value."""
        if self.type in NAME_TYPES:
            return self.pattern or NAME_PATTERN.strip("^$")
        return self.pattern or DEFAULT_TEXT_PATTERN

    def check_text(self, text: str, admin_pattern: str | None = None) -> str | None:
        """Why free text is refused (None: accepted). An admin's pattern (``admin_pattern``,
        e.g. a write-in's ``validation_regex``, else the option's ``pattern``) decides alone:
        what it matches entirely is accepted, whatever the characters. Without one, a
        character of :data:`FORBIDDEN_CATEGORIES` is refused, then the default pattern applies."""
        pattern = admin_pattern or self.pattern
        if pattern is not None:
            return None if re.fullmatch(pattern, text) else f"does not match {pattern}"
        bad = forbidden_character(text)
        if bad is not None:
            return f"contains the control or invisible character {bad}, which is not allowed here"
        if re.fullmatch(self.text_pattern(), text):
            return None
        if self.type in NAME_TYPES:
            return f"is not a name: {NAME_RULE}"
        return "must be 1 to 256 characters"


OptionKey = Annotated[str, Field(pattern=SLUG_RE.pattern)]


class Profile(_Overrides):
    """One entry of ``profile_list``."""

    display_name: str
    slug: str = ""
    description: str = ""
    default: bool = False
    backend: str | None = None
    cluster: str | None = None
    #: the name of a ``container_images`` entry this profile's servers run in (issue 17)
    container: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    profile_options: dict[str, Option] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _derive_slug(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("slug") and isinstance(data.get("display_name"), str):
            return {**data, "slug": slugify(data["display_name"])}
        return data

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if not SLUG_RE.match(self.slug):
            raise ValueError(f"slug {self.slug!r} may only use letters, digits, '_', '.' and single '-'")
        if sum(o.type == "modules" for o in self.profile_options.values()) > 1:
            raise ValueError("a profile has at most one option of type modules")
        for key, option in self.profile_options.items():
            if not SLUG_RE.match(key) or key == "profile" or key.endswith(UNLISTED_SUFFIX):
                raise ValueError(f"option key {key!r} is not usable (letters, digits, '_', '.', single '-')")
            earlier = list(self.profile_options)[: list(self.profile_options).index(key)]
            for other in option.when:
                if other not in earlier:
                    raise ValueError(
                        f"profile_options.{key}.when: {other!r} is not an option declared before it"
                    )
        return self

    @property
    def all_overrides(self) -> dict[str, Any]:
        """Profile-level overrides, with ``backend``/``cluster``/``container`` as the traits they
        set (``container`` sets ``container_image``)."""
        result = self.overrides
        if self.backend is not None:
            result["backend"] = self.backend
        if self.cluster is not None:
            result["cluster"] = self.cluster
        if self.container is not None:
            result["container_image"] = self.container
        return result


class ProfileList(_Strict):
    """The validated, ordered profiles; slugs are unique and exactly one is the default."""

    profiles: list[Profile]
    #: keys KubeSpawner accepts and ignores, accepted and dropped here: (path, why), one
    #: warning each at hub start (:func:`ignored_key_warnings`)
    ignored: tuple[tuple[str, str], ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> ProfileList:
        seen: set[str] = set()
        for profile in self.profiles:
            if profile.slug in seen:
                raise ValueError(f"two profiles have the slug {profile.slug!r}")
            seen.add(profile.slug)
        return self

    def visible(self, user: str, groups: frozenset[str]) -> list[Profile]:
        return [p for p in self.profiles if p.visible_to(user, groups)]

    @staticmethod
    def default_of(profiles: list[Profile]) -> Profile | None:
        """KubeSpawner's rule: the first one marked ``default``, else the first."""
        return next((p for p in profiles if p.default), profiles[0] if profiles else None)

    def by_slug(self, slug: str) -> Profile | None:
        return next((p for p in self.profiles if p.slug == slug), None)


def _error_path(loc: tuple[int | str, ...]) -> str:
    """``('profiles', 1, 'profile_options', 'cpus')`` -> ``profile_list[1].profile_options.cpus``."""
    parts = ["profile_list"]
    for item in loc[1:]:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


#: Keys of a profile, option or choice that KubeSpawner ignores when they are placed inside an
#: override (it sets them as plain attributes that nothing reads), e.g. ``default: true`` one
#: level too deep. Accepted and dropped, with a warning, unless the spawner has such a trait.
IGNORED_OVERRIDE_KEYS = frozenset({"default", "display_name", "description", "slug"})
#: Keys of ``unlisted_choice`` that KubeSpawner's form does not use (and ignores).
IGNORED_UNLISTED_KEYS = frozenset({"description"})
OVERRIDE_NAMES = ("kubespawner_override", "spawner_override")


def _without_ignored(
    item: Any, path: str, trait_names: frozenset[str] | None, ignored: list[tuple[str, str]]
) -> Any:
    """``item`` (a profile, option, choice or write-in, as configured) without the keys KubeSpawner
    ignores inside its overrides; each dropped key is added to ``ignored`` with its path."""
    if not isinstance(item, Mapping):
        return item
    result = dict(item)
    for name in OVERRIDE_NAMES:
        overrides = result.get(name)
        if not isinstance(overrides, Mapping):
            continue
        drop = [
            k
            for k in overrides
            if k in IGNORED_OVERRIDE_KEYS and (trait_names is None or k not in trait_names)
        ]
        for key in drop:
            ignored.append(
                (
                    f"{path}.{name}.{key}",
                    "ignored: not a trait of the spawner (KubeSpawner ignores it too; "
                    "a profile or choice key placed inside an override?)",
                )
            )
        result[name] = {k: v for k, v in overrides.items() if k not in drop}
    return result


def _strip_ignored(
    items: list[Any], trait_names: frozenset[str] | None
) -> tuple[list[Any], list[tuple[str, str]]]:
    """The profiles without the keys KubeSpawner accepts and ignores, and those keys' paths."""
    ignored: list[tuple[str, str]] = []
    out: list[Any] = []
    for i, profile in enumerate(items):
        where = f"profile_list[{i}]"
        profile = _without_ignored(profile, where, trait_names, ignored)
        options = profile.get("profile_options") if isinstance(profile, dict) else None
        if isinstance(options, Mapping):
            new_options: dict[Any, Any] = {}
            for key, option in options.items():
                base = f"{where}.profile_options.{key}"
                option = _without_ignored(option, base, trait_names, ignored)
                if isinstance(option, dict):
                    choices = option.get("choices")
                    if isinstance(choices, Mapping):
                        option["choices"] = {
                            ck: _without_ignored(c, f"{base}.choices.{ck}", trait_names, ignored)
                            for ck, c in choices.items()
                        }
                    unlisted = _without_ignored(
                        option.get("unlisted_choice"), f"{base}.unlisted_choice", trait_names, ignored
                    )
                    if isinstance(unlisted, dict):
                        for key2 in sorted(IGNORED_UNLISTED_KEYS & set(unlisted)):
                            del unlisted[key2]
                            ignored.append(
                                (f"{base}.unlisted_choice.{key2}", "ignored (KubeSpawner does not use it)")
                            )
                        option["unlisted_choice"] = unlisted
                new_options[key] = option
            profile["profile_options"] = new_options
        out.append(profile)
    return out, ignored


def ignored_key_warnings(profiles: ProfileList) -> list[str]:
    """One warning text per key that was accepted and ignored, naming its path."""
    return [f"{path}: {why}" for path, why in profiles.ignored]


def parse_profile_list(raw: object, trait_names: frozenset[str] | None = None) -> ProfileList:
    """Validate ``profile_list`` (a list, or a dict sorted by key); raise :class:`ProfileConfigError`.

    With ``trait_names``, every override key must be one of them (the spawner's traits).
    Keys KubeSpawner accepts and ignores (:data:`IGNORED_OVERRIDE_KEYS` inside an override,
    :data:`IGNORED_UNLISTED_KEYS` of a write-in) are dropped and listed in ``ignored``.
    """
    if isinstance(raw, Mapping):
        items = [raw[k] for k in sorted(raw)]
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise ProfileConfigError("profile_list", "must be a list or a dict of profiles")
    if not items:
        raise ProfileConfigError("profile_list", "is empty")
    items, ignored = _strip_ignored(items, trait_names)
    try:
        result = ProfileList.model_validate({"profiles": items, "ignored": tuple(ignored)})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if not str(p).startswith("function-"))
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling)"
        raise ProfileConfigError(_error_path(loc), reason) from None
    if trait_names is not None:
        check_override_keys(result, trait_names)
    return result


def check_override_keys(profiles: ProfileList, trait_names: frozenset[str]) -> None:
    """Every override key must name a trait of the spawner; job fields must be plain values."""
    for i, profile in enumerate(profiles.profiles):
        where = f"profile_list[{i}]"
        _check_keys(f"{where}.overrides", profile.all_overrides, trait_names)
        for key, option in profile.profile_options.items():
            base = f"{where}.profile_options.{key}"
            _check_keys(f"{base}.overrides", option.overrides, trait_names)
            _check_keys(f"{base}.unlisted_choice.overrides", option.unlisted_choice.overrides, trait_names)
            for ckey, choice in option.choices.items():
                _check_keys(f"{base}.choices.{ckey}.overrides", choice.overrides, trait_names)


def _check_keys(where: str, overrides: Mapping[str, Any], trait_names: frozenset[str]) -> None:
    for key, value in overrides.items():
        if key not in trait_names:
            raise ProfileConfigError(f"{where}.{key}", "the spawner has no such trait")
        if key in JOB_FIELDS and callable(value):
            raise ProfileConfigError(f"{where}.{key}", "job-request fields must be plain values")
