"""The form: escaped, labelled, pre-filled; form fields and spawn links parse into flat user_options."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from jupyterhub_hpc.profiles.form import options_from_formdata, render_form
from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.validate import reconcile, reconcile_each, remembered_choices, resolve

from .conftest import SITE_PROFILES
from .test_validate import PER_PROFILE, PROFILES, _short_partition_limits, ctx


class Inputs(HTMLParser):
    """Every form control and label of the rendered form."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "select"):
            self.controls.append({"tag": tag, **a})
        elif tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def render(profiles: Any = PROFILES, remembered: dict[str, Any] | None = None, **kw: Any) -> str:
    context = ctx(**kw)
    prefill, notices = reconcile(profiles, remembered or {}, context)
    return render_form(
        profiles, context, prefill, notices, api_url="/hub/api/hpc/profiles", refresh_seconds=30
    )


def test_every_control_has_a_label_and_kubespawner_names() -> None:
    parser = Inputs()
    parser.feed(render())
    names = {c["name"] for c in parser.controls}
    assert {
        "profile",
        "profile-option-cpu--cpus",
        "profile-option-cpu--env",
        "profile-option-cpu--env--unlisted-choice",
        "profile-option-gpu--gpu_type",
    } <= names
    for control in parser.controls:
        assert control["id"] in parser.labels, control
    # the hidden profile is not in the form at all
    assert not any("staff" in str(c["name"]) or c.get("value") == "staff" for c in parser.controls)


def test_configuration_text_is_escaped() -> None:
    evil = parse_profile_list(
        [
            {
                "display_name": "<script>alert(1)</script>",
                "slug": "x",
                "description": '"><img src=x onerror=alert(2)>',
                "profile_options": {
                    "o": {
                        "display_name": "<b>o</b>",
                        "choices": {"c": {"display_name": "</option><script>alert(3)</script>"}},
                    }
                },
            }
        ]
    )
    html = render(evil)
    assert "<script>alert" not in html and "<img" not in html and "<b>o</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the embedded data cannot close its script element either
    assert "</script><script>alert" not in html


def test_prefill_from_remembered_options_and_a_visible_notice() -> None:
    html = render(remembered={"profile": "gpu", "gpus": 2, "walltime": "02:00:00"})
    assert re.search(r'value="gpu"[^>]*checked', html.replace("\n", " "))
    assert 'name="profile-option-gpu--walltime" id="hpc-gpu-walltime" value="02:00:00"' in html
    html = render(remembered={"profile": "retired", "gpus": 9})
    assert "no longer available" in html and 'role="status"' in html
    assert re.search(r'value="cpu"[^>]*checked', html.replace("\n", " "))


def test_every_profile_is_prefilled_from_its_own_memory() -> None:
    context = ctx()
    last = {"profile": "gpu", "gpus": 2, "walltime": "02:00:00"}
    memory = {
        "cpu": {"profile": "cpu", "cpus": 3, "walltime": "00:45:00"},
        "gpu": last,
        "retired": {"profile": "retired"},
    }
    prefill, notices = reconcile(PROFILES, last, context)
    others, more = reconcile_each(PROFILES, memory, context, skip="gpu")
    assert set(others) == {"cpu"} and notices == more == []
    html = render_form(PROFILES, context, prefill, [], remembered=others)
    flat = html.replace("\n", " ")
    assert re.search(r'value="gpu"[^>]*checked', flat)
    assert 'name="profile-option-gpu--walltime" id="hpc-gpu-walltime" value="02:00:00"' in html
    assert 'name="profile-option-cpu--walltime" id="hpc-cpu-walltime" value="00:45:00"' in html
    assert re.search(r'name="profile-option-cpu--cpus" id="hpc-cpu-cpus" value="3"', html)
    # a stale memory of another profile falls back to its default, with a notice naming the profile
    others, more = reconcile_each(PROFILES, {"cpu": {"cpus": 10_000}}, context)
    assert others["cpu"].user_options["cpus"] != 10_000
    assert len(more) == 1 and more[0].startswith("CPU (interactive): Your last choice 10000 for 'cpus'")


def test_what_is_remembered_leaves_out_options_marked_not_to_remember() -> None:
    profiles = parse_profile_list(
        [
            {
                "display_name": "P",
                "slug": "p",
                "profile_options": {
                    "image": {"display_name": "Image", "choices": {"a": {"display_name": "A"}}},
                    "note": {"type": "text", "display_name": "Note", "remember": False},
                },
            }
        ]
    )
    res = resolve(profiles, {"profile": "p", "image": "a", "note": "just today"}, ctx())
    assert res.user_options["note"] == "just today"
    assert remembered_choices(res) == {"profile": "p", "image": "a"}


def test_bounds_follow_the_partition_and_the_table_shows_availability() -> None:
    html = render()
    gpu_walltime = re.search(r'id="hpc-gpu-walltime-help">\s*<span class="hpc-hint">([^<]*)<', html)
    assert gpu_walltime and gpu_walltime.group(1).startswith("up to 04:00:00 on partition gpu")
    assert 'name="profile-option-gpu--gpus" id="hpc-gpu-gpus" value="1"' in html and 'max="2"' in html
    assert "<caption>" in html and 'data-partition="gpu"' in html and "04:00:00</td>" in html


def test_form_fields_become_flat_user_options() -> None:
    form = {
        "profile": ["gpu"],
        "profile-option-gpu--gpus": ["0"],
        "profile-option-gpu--gpu_type": ["tesla"],  # posted without JavaScript, but gpus is 0
        "profile-option-gpu--walltime": ["00:30:00"],
        "profile-option-cpu--cpus": ["4"],  # another profile's field
    }
    assert options_from_formdata(form, PROFILES) == {"profile": "gpu", "gpus": "0", "walltime": "00:30:00"}
    form = {
        "profile": ["cpu"],
        "profile-option-cpu--env": ["unlisted-choice"],
        "profile-option-cpu--env--unlisted-choice": ["my-env"],
        "profile-option-cpu--memory": [""],
    }
    options = options_from_formdata(form, PROFILES)
    assert options == {"profile": "cpu", "env--unlisted-choice": "my-env"}
    assert resolve(PROFILES, options, ctx()).user_options["env--unlisted-choice"] == "my-env"
    # a listed choice wins over a write-in the browser posted anyway
    form["profile-option-cpu--env"] = ["ml"]
    assert options_from_formdata(form, PROFILES) == {"profile": "cpu", "env": "ml"}


def test_single_profile_forms_and_site_profiles_render() -> None:
    single = parse_profile_list([SITE_PROFILES[1]])
    html = render(single)
    assert "<legend>Profile</legend>" in html and "Large memory (short)" in html


def test_the_form_shows_the_default_a_start_would_use() -> None:
    parser = Inputs()
    parser.feed(render(PER_PROFILE, limits=_short_partition_limits()))
    values = {c["name"]: c.get("value") for c in parser.controls if c["tag"] == "input"}
    # the profile's own 4 h and 4 CPUs, not the admin's 8 h and 1 CPU
    assert values["profile-option-shared--walltime"] == "04:00:00"
    assert values["profile-option-shared--cpus"] == "4"
    # the 6 h / 16G / 5-CPU partition's own maximum, not a default it would refuse
    assert values["profile-option-short--walltime"] == "06:00:00"
    assert values["profile-option-short--memory"] == "16G"
    assert values["profile-option-short--cpus"] == "4"
