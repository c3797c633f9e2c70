"""The registry: decorators, duplicates, suggestions, entry-point plugins and their failures."""

import sys
import textwrap

import pytest

from ncbench.errors import PluginError, UnknownNameError
from ncbench.registry import BACKBONES, DATASETS, METHODS, Registry


def test_register_and_lookup():
    reg = Registry("widget", "ncbench.test-widgets", lambda: None)

    @reg.register("alpha")
    class Alpha:
        """Alpha widget: the first one."""

    assert reg.get("alpha") is Alpha
    assert reg.entry("alpha").description == "Alpha widget: the first one."
    assert "alpha" in reg and reg.names() == ["alpha"]


def test_duplicate_name_is_an_error():
    reg = Registry("widget", "ncbench.test-widgets", lambda: None)
    reg.register("a")(type("A", (), {}))
    with pytest.raises(PluginError, match="registered twice"):
        reg.register("a")(type("B", (), {}))


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError) as err:
        METHODS.get("vanila")
    assert "did you mean 'vanilla'" in str(err.value)
    with pytest.raises(UnknownNameError, match="synthetic"):
        DATASETS.get("synthetik")


def test_builtins_are_registered():
    assert "vanilla" in METHODS.names()
    assert "vse_light" in BACKBONES.names()
    assert {"synthetic", "f30k", "coco", "cc152k"} <= set(DATASETS.names())


def _install_fake_distribution(tmp_path, monkeypatch, group, entries, module_src):
    """A real (tiny) installed distribution on sys.path, found through importlib.metadata."""
    (tmp_path / "fakeplug.py").write_text(textwrap.dedent(module_src))
    dist = tmp_path / "fakeplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fakeplug", raising=False)


def test_entry_point_plugin_registers(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, monkeypatch, "ncbench.test-plugins", {"gizmo": "fakeplug"}, """
        from ncbench.registry import Registry
        import ncbench_test_registry
        @ncbench_test_registry.REG.register("gizmo")
        class Gizmo:
            '''Gizmo from a plugin.'''
    """)
    reg = Registry("gizmo", "ncbench.test-plugins", lambda: None)
    monkeypatch.setitem(sys.modules, "ncbench_test_registry", type(sys)("ncbench_test_registry"))
    sys.modules["ncbench_test_registry"].REG = reg
    assert reg.get("gizmo").__doc__ == "Gizmo from a plugin."
    assert reg.entry("gizmo").source.startswith("entry point 'gizmo'")


def test_plugin_import_error_is_reported_not_swallowed(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, monkeypatch, "ncbench.test-broken", {"broken": "fakeplug"},
                               "import a_module_that_does_not_exist\n")
    reg = Registry("thing", "ncbench.test-broken", lambda: None)
    assert "ModuleNotFoundError" in reg.load_errors["broken"]
    with pytest.raises(PluginError, match="failed to import: ModuleNotFoundError"):
        reg.get("broken")
