"""Both paths of the torchvision guard, each in a fresh interpreter."""
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")


def _run(code: str, env_path: str | None = None) -> str:
    pre = f"import sys; sys.path.insert(0, {env_path!r})\n" if env_path else ""
    out = subprocess.run([sys.executable, "-c", pre + textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_native_path_leaves_torchvision_alone(tmp_path):
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("NATIVE_FAKE = True\n")
    line = _run("""
        from ste_opt.learning_hooks import _compat
        s = _compat.ensure_torchvision()
        import sys, torchvision
        print(s, torchvision.NATIVE_FAKE, _compat._LIBRARY is None and 'torch' not in sys.modules)
    """, env_path=str(tmp_path))
    assert line == "native True True"


def test_shim_path_on_broken_operator_error(tmp_path):
    # a fake torchvision that fails the way the CUDA wheel does, unless the schema exists
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import torch
        try:
            torch.ops.torchvision.nms.default
        except (AttributeError, RuntimeError):
            raise RuntimeError("operator torchvision::nms does not exist")
        FAKE_OK = True
    """))
    line = _run("""
        from ste_opt.learning_hooks import _compat
        s = _compat.ensure_torchvision()
        import torchvision
        print(s, torchvision.FAKE_OK, _compat.ensure_torchvision())
    """, env_path=str(tmp_path))
    assert line == "shimmed True shimmed"


def test_absent_path(tmp_path):
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('no torchvision here')\n")
    line = _run("""
        from ste_opt.learning_hooks import _compat
        print(_compat.ensure_torchvision())
    """, env_path=str(tmp_path))
    assert line == "absent"


def test_other_runtime_errors_propagate(tmp_path):
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('something else')\n")
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
                          "from ste_opt.learning_hooks import _compat; _compat.ensure_torchvision()"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "something else" in out.stderr


def test_installed_environment_imports_timm_and_peft():
    from ste_opt.learning_hooks._compat import import_peft, import_timm, torchvision_status
    timm, peft = import_timm(), import_peft()
    import torchvision.ops.misc  # noqa: F401  (the Python layer timm needs)
    assert torchvision_status() in ("native", "shimmed")
    assert hasattr(timm, "create_model") and hasattr(peft, "LoraConfig")


def test_import_ste_opt_does_not_import_torch():
    line = _run("""
        import sys, ste_opt, ste_opt.payload, ste_opt.cli
        print(any(m in sys.modules for m in ('torch', 'timm', 'peft', 'ste_opt.learning_hooks')))
    """)
    assert line == "False"
