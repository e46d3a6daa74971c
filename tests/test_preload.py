"""preload.py registers the flags without lib_controlnet on sys.path (as A1111 runs it)."""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_preload_adds_the_reference_flags_from_a_bare_interpreter(tmp_path):
    code = (
        "import argparse, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('preload', {str(ROOT / 'preload.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "p = argparse.ArgumentParser(); m.preload(p)\n"
        "a = p.parse_args(['--controlnet-dir', '/x', '--controlnet-preprocessor-cache-size', '4'])\n"
        "assert 'lib_controlnet' not in sys.modules\n"
        "print(a.controlnet_dir, a.controlnet_preprocessor_cache_size)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["/x", "4"]
    assert argparse  # the module under test takes an argparse parser
