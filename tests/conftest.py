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


def pytest_collection_modifyitems(config, items):
    """End-to-end runs (marked slow) first: under pytest-xdist the long shared runs then
    start at once and the quick tests fill the other worker around them, instead of two
    multi-minute runs starting last and forming the tail of `make test`."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def interrupt_training(monkeypatch):
    """Make the next training job die during epoch ``at`` (as a killed job would), then
    ``restore()`` lets a rerun resume: ``restore = interrupt_training(at=2)``."""
    from mmssl.train.loop import Trainer

    original = Trainer.train_epoch

    def install(at: int = 2):
        calls = {"n": 0}

        def interrupted(self):
            calls["n"] += 1
            if calls["n"] == at:
                raise KeyboardInterrupt  # the job is killed during this epoch
            return original(self)

        monkeypatch.setattr(Trainer, "train_epoch", interrupted)
        return lambda: monkeypatch.setattr(Trainer, "train_epoch", original)

    return install


def write_toy_store(folder: Path, n: int, n_train: int) -> Path:
    """Two views ('a', 'b': 1x16x16) of ``n`` random images in 4 classes as a packed store
    under ``folder``, with fold0.tsv: the first ``n_train`` train, the rest val."""
    import numpy as np
    import pandas as pd

    from mmssl.data.store import write_store
    from mmssl.types import SourceSpec

    rng = np.random.default_rng(0)
    base = rng.random((n, 1, 16, 16)).astype(np.float32)
    ids = [f"s{i}" for i in range(n)]
    index = pd.DataFrame({"sample": ids, "subject": ids, "label": np.arange(n) % 4})
    noisy = np.clip(base + 0.1 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)
    write_store(folder / "store", index, {"a": base, "b": noisy}, [SourceSpec("a", 1, 16), SourceSpec("b", 1, 16)])
    split = pd.DataFrame({"subject": ids, "label": index.label, "split": ["train"] * n_train + ["val"] * (n - n_train)})
    split.to_csv(folder / "fold0.tsv", sep="\t", index=False)
    return folder
