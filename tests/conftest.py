import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))  # the package, also without `pip install -e`

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: one torch thread each, so the
    # workers do not oversubscribe the cores they share
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Stand-ins for FSL's executables (FSL cannot be installed here). Each gets the argv that
# fslpy's wrapper built, so a test checks the wrapper calls and file names for real.
FSL_STUBS = {
    # robustfov: copy the head
    "robustfov": """import shutil, sys
a = sys.argv
shutil.copy(a[a.index("-i") + 1], a[a.index("-r") + 1])
""",
    # bet: brain = head inside the true mask file the test names
    "bet": """import os, sys, nibabel as nib, numpy as np
src, out = sys.argv[1], sys.argv[2]
img = nib.load(src)
mask = np.asarray(nib.load(os.environ["STUB_MASK"]).dataobj) > 0
nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * mask, img.affine), out + ".nii.gz")
nib.save(nib.Nifti1Image(mask.astype(np.uint8), img.affine), out + "_mask.nii.gz")
""",
    # flirt: the FLIRT matrix of a known world transform (what real FLIRT would find), so
    # the conversion back to world coordinates is what is tested
    "flirt": """import os, sys, numpy as np
from fsl.data.image import Image
from fsl.transform.flirt import toFlirt
a = sys.argv
world = np.loadtxt(os.environ["STUB_MOVING_TO_FIXED"])
mat = toFlirt(world, Image(a[a.index("-in") + 1]), Image(a[a.index("-ref") + 1]), "world", "world")
np.savetxt(a[a.index("-omat") + 1], mat)
""",
    # mcflirt: "corrects" by adding a strong oscillation at 0.4 cycles/volume (outside the
    # fALFF band) so a test can tell the corrected series was used; writes the known
    # motion parameters of $STUB_PAR as mcflirt -plots does
    "mcflirt": """import os, sys, nibabel as nib, numpy as np
a = sys.argv
assert "-plots" in a, a
src, out = a[a.index("-in") + 1], a[a.index("-out") + 1]
img = nib.load(src)
data = img.get_fdata(dtype=np.float32)
data += 0.5 * data.mean(axis=3, keepdims=True) * np.sin(2 * np.pi * 0.4 * np.arange(data.shape[3]))
nib.save(nib.Nifti1Image(data, img.affine, img.header), out + ".nii.gz")
np.savetxt(out + ".par", np.loadtxt(os.environ["STUB_PAR"]))
""",
}


@pytest.fixture
def stub_fsl(tmp_path, monkeypatch):
    """Install the FSL stand-ins under tmp_path/fsl/bin and point FSLDIR at them; returns
    a function to set the stubs' environment (STUB_MASK, STUB_MOVING_TO_FIXED, STUB_PAR)."""
    pytest.importorskip("fsl", reason="fslpy (the optional FSL backend's Python side) is not installed")
    fsldir = tmp_path / "fsl"
    (fsldir / "bin").mkdir(parents=True)
    for tool, body in FSL_STUBS.items():
        exe = fsldir / "bin" / tool
        exe.write_text(f"#!{sys.executable}\n{body}")
        exe.chmod(0o755)
    monkeypatch.setenv("FSLDIR", str(fsldir))
    monkeypatch.setenv("FSLOUTPUTTYPE", "NIFTI_GZ")

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, str(value))

    return set_env
