"""What setup builds is what a run uses, with no variable: the base image of container generators
is looked up as $BENCH_BASE_IMAGE, the user's settings file (recorded by `bench images build
--base-image`, which setup runs), python:3.11-slim (local or pulled), then a local image labelled
org.scgenbench.base; where none is there the error names the command that makes one."""

from __future__ import annotations

import docker
import pytest

import bench.generators.container as C
from bench.api import userconfig
from bench.api.errors import UserError
from bench.cli import main


@pytest.fixture(autouse=True)
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("BENCH_BASE_IMAGE", raising=False)
    monkeypatch.delenv("BENCH_GPU_BASE_IMAGE", raising=False)
    return tmp_path / "config" / "config.toml"


class FakeImage:
    def __init__(self, id, tags=(), created=""):
        self.id, self.tags, self.attrs = id, list(tags), {"Created": created}


class FakeImages:
    def __init__(self, local=None, labelled=(), pull=None):
        self.local, self.labelled, self.pulled = dict(local or {}), list(labelled), pull

    def get(self, name):
        if name in self.local:
            return self.local[name]
        raise docker.errors.ImageNotFound(name)

    def pull(self, name):
        if self.pulled is None:
            raise docker.errors.APIError("registry unreachable: dial tcp: lookup registry-1.docker.io")
        return self.pulled

    def list(self, filters=None):
        assert filters == {"label": C.BASE_LABEL}
        return self.labelled


class FakeClient:
    def __init__(self, **kw):
        self.images = FakeImages(**kw)


def test_lookup_order_variable_then_settings_then_default(settings, monkeypatch):
    assert C.configured_base_image() == (None, "")
    assert C.default_base_image() == "python:3.11-slim"
    userconfig.record("docker", "base_image", "scgenbench/base:bookworm")
    assert C.configured_base_image() == ("scgenbench/base:bookworm", f"[docker] base_image in {settings}")
    assert C.default_base_image("gpu") == "scgenbench/base:bookworm"  # the gpu variant falls back to it
    monkeypatch.setenv("BENCH_BASE_IMAGE", "mine:1")
    assert C.configured_base_image() == ("mine:1", "$BENCH_BASE_IMAGE")


def test_the_recorded_base_is_used_without_pulling():
    userconfig.record("docker", "base_image", "scgenbench/base:bookworm")
    client = FakeClient(local={"scgenbench/base:bookworm": FakeImage("sha256:b")})
    base = C.resolve_base_image(client)
    assert (base.name, base.id) == ("scgenbench/base:bookworm", "sha256:b")


def test_without_a_registry_a_labelled_local_base_is_found():
    old, new = (
        FakeImage("sha256:old", ["x:old"], "2026-01-01"),
        FakeImage("sha256:new", ["x:new"], "2026-12-01"),
    )
    base = C.resolve_base_image(FakeClient(labelled=[old, new]))
    assert (base.name, base.id) == ("x:new", "sha256:new") and C.BASE_LABEL in base.source


def test_a_registry_user_keeps_python_slim():
    base = C.resolve_base_image(
        FakeClient(pull=FakeImage("sha256:slim"), labelled=[FakeImage("sha256:l", ["l:1"])])
    )
    assert (base.name, base.id) == ("python:3.11-slim", "sha256:slim")


def test_no_base_anywhere_names_the_command_that_makes_one():
    with pytest.raises(UserError) as err:
        C.resolve_base_image(FakeClient())
    text = str(err.value)
    assert "python:3.11-slim is not local and cannot be pulled" in text
    assert (
        "bash scripts/setup.sh --services" in text and "bench images build scgan --base-image IMAGE" in text
    )
    assert "\n" not in text


def test_a_recorded_base_that_is_gone_says_where_it_was_chosen(settings):
    userconfig.record("docker", "base_image", "gone:1")
    with pytest.raises(
        UserError, match=r"gone:1 is not available locally.*chosen by \[docker\] base_image in"
    ):
        C.resolve_base_image(FakeClient())


def test_images_build_records_the_base_image(settings, monkeypatch, capsys):
    import bench.generators.container as container

    monkeypatch.setattr(container, "build_image", lambda name, **kw: f"scgenbench/{name}:cpu-abc")
    assert main(["images", "build", "scgan", "--base-image", "scgenbench/base:bookworm"]) == 0
    assert userconfig.get("docker", "base_image") == "scgenbench/base:bookworm"
    assert "recorded scgenbench/base:bookworm as your cpu base image" in capsys.readouterr().out
    assert main(["images", "build", "scgan", "--base-image", "other:1", "--no-record"]) == 0
    assert userconfig.get("docker", "base_image") == "scgenbench/base:bookworm"


def test_settings_keep_other_values_and_refuse_bad_toml(settings):
    settings.parent.mkdir(parents=True)
    settings.write_text('[other]\nkeep = "yes"\n')
    userconfig.record("docker", "base_image", 'a"b')
    assert userconfig.load() == {"other": {"keep": "yes"}, "docker": {"base_image": 'a"b'}}
    settings.write_text("[docker\n")
    with pytest.raises(UserError, match="not valid TOML"):
        userconfig.load()


@pytest.mark.docker
def test_after_setup_a_run_finds_the_image_setup_built(require_docker, monkeypatch):
    """The fresh-machine failure of issue 26: after `bash scripts/setup.sh --services`, with no
    variable set, the scGAN image a run asks for is the one setup built (no build, no pull)."""
    monkeypatch.undo()  # the user's real settings, as setup wrote them
    monkeypatch.delenv("BENCH_BASE_IMAGE", raising=False)
    from bench.registry import get_generator

    client = C.docker_client()
    base = C.resolve_base_image(client)
    tag = get_generator("scgan").image_tag(base.id, "cpu")
    client.images.get(tag)  # raises ImageNotFound when setup built it on another base
    assert C.ensure_image(get_generator("scgan"), client, progress=False) == tag
