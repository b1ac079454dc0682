"""fALFF and ALFF against slow independent references, known spectra, TR rules and bad-input handling."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import signal

from mmssl.errors import BadInputError
from mmssl.preprocess.falff import (
    FalffSettings,
    TooFewVolumesError,
    TRFromHeaderWarning,
    amplitude_maps,
    amplitude_timeseries,
    falff,
    falff_file,
    falff_timeseries,
)

TR = 2.2
N = 164


def reference_falff(series: np.ndarray, tr: float, band=(0.01, 0.1), order: int = 1, include_nyquist: bool = True) -> float:
    """One voxel, written from the definition: scipy detrend, explicit DFT sums, inclusive band."""
    n = len(series)
    t = np.arange(n, dtype=float)
    x = np.asarray(series, dtype=float)
    if order == 1:
        x = signal.detrend(x, type="linear")
    else:
        x = x - np.polyval(np.polyfit(t, x, order), t)
    total = band_sum = 0.0
    for k in range(1, n // 2 + 1):
        f = k / (n * tr)
        if k == n / 2 and not include_nyquist:
            continue
        amplitude = abs(np.sum(x * np.exp(-2j * np.pi * k * t / n)))
        total += amplitude
        if band[0] <= f <= band[1]:
            band_sum += amplitude
    return band_sum / total


def naive_alff(series: np.ndarray, tr: float, band=(0.01, 0.1)) -> np.ndarray:
    """ALFF of each row of ``series`` (V, T) the obvious numpy way: least-squares line off,
    numpy's FFT, the band's amplitudes summed, scaled by 2/T (a bin's sinusoid amplitude)."""
    n = series.shape[1]
    t = np.arange(n, dtype=float)
    out = []
    for row in np.asarray(series, dtype=float):
        slope, intercept = np.polyfit(t, row, 1)
        spectrum = np.abs(np.fft.rfft(row - (slope * t + intercept)))
        freqs = np.fft.rfftfreq(n, tr)
        out.append(2.0 / n * spectrum[(freqs >= band[0]) & (freqs <= band[1])].sum())
    return np.array(out)


def test_alff_is_the_unnormalised_band_amplitude():
    """ALFF: fALFF's numerator without the ratio, in the signal's units (2|X_k|/T per bin)."""
    rng = np.random.default_rng(7)
    t = np.arange(N) * TR
    series = 100.0 + 3.0 * np.sin(2 * np.pi * 0.05 * t)[None] + rng.normal(0, 1, (6, N)) * np.arange(1, 7)[:, None]
    falff_values, alff_values = amplitude_timeseries(series, TR)
    np.testing.assert_allclose(alff_values, naive_alff(series, TR), rtol=1e-4)
    np.testing.assert_allclose(falff_values, falff_timeseries(series, TR))  # the same pass gives fALFF
    # unlike fALFF, ALFF grows with the fluctuations' size and keeps their units
    assert np.all(np.diff(alff_values[1:]) > 0)
    doubled = amplitude_timeseries(2 * series, TR)
    np.testing.assert_allclose(doubled[1], 2 * alff_values, rtol=1e-5)
    np.testing.assert_allclose(doubled[0], falff_values, rtol=1e-5)
    # a cosine of amplitude 4 on a whole bin (18 cycles), no detrending: ALFF is exactly 4
    cosine = 4.0 * np.cos(2 * np.pi * 18 / (N * TR) * t)[None]
    assert amplitude_timeseries(cosine, TR, FalffSettings.from_config({"detrend_order": 0}))[1][0] == pytest.approx(4.0, rel=1e-5)
    # a flat voxel scores 0, not noise
    assert amplitude_timeseries(np.full((1, N), 250.0), TR)[1][0] == 0.0


def test_alff_map_and_file_match_the_timeseries_function(tmp_path):
    rng = np.random.default_rng(8)
    data = (500 + rng.normal(0, 4, (5, 4, 3, N + 2))).astype(np.float32)
    mask = np.zeros((5, 4, 3), bool)
    mask[1:4, 1:3, :] = True
    settings = FalffSettings.from_config({"dummy_volumes": 2})
    falff_map, alff_map = amplitude_maps(data, TR, mask, settings)
    np.testing.assert_allclose(alff_map[mask], naive_alff(data[mask][:, 2:], TR), rtol=1e-4)
    assert np.all(alff_map[~mask] == 0) and np.array_equal(falff_map, falff(data, TR, mask, settings))


def _bins(n: int, tr: float, band=(0.01, 0.1)) -> tuple[int, int]:
    freqs = np.arange(1, n // 2 + 1) / (n * tr)
    return int(((freqs >= band[0]) & (freqs <= band[1])).sum()), len(freqs)


def test_sinusoid_in_band_scores_near_one_and_above_band_near_zero():
    t = np.arange(N) * TR
    phases = np.linspace(0, np.pi, 5)[:, None]
    in_band = np.sin(2 * np.pi * 0.05 * t + phases)
    above = np.sin(2 * np.pi * 0.2 * t + phases)
    # 0.05 Hz is 18.04 cycles in 164 x 2.2 s: leakage into every bin keeps the amplitude ratio
    # below 1 (~0.87-0.93 after linear detrending); white noise scores ~0.40 for comparison.
    assert falff_timeseries(in_band + 100.0, TR).min() > 0.85
    assert falff_timeseries(above + 100.0, TR).max() < 0.1
    for row in np.vstack([in_band, above]):
        assert falff_timeseries(row[None], TR)[0] == pytest.approx(reference_falff(row, TR), abs=1e-5)
    # Whole numbers of cycles without detrending: no leakage, exactly 1 and 0.
    exact = np.sin(2 * np.pi * np.array([[18.0], [72.0]]) / (N * TR) * t + 0.3)
    np.testing.assert_allclose(falff_timeseries(exact, TR, FalffSettings.from_config({"detrend_order": 0})), [1.0, 0.0], atol=1e-5)


def test_white_noise_scores_the_band_share_of_bins():
    rng = np.random.default_rng(1)
    values = falff_timeseries(rng.standard_normal((4000, N)), TR)
    n_band, n_total = _bins(N, TR)
    # Rayleigh mean amplitude in every bin but Nyquist, where |X| is half-normal (mean sqrt(2/pi)
    # vs sqrt(pi/4) of the same scale); N is even here, so the last bin is the Nyquist bin.
    expected = n_band / (n_total - 1 + np.sqrt(2 / np.pi) / np.sqrt(np.pi / 4))
    assert n_band == 33 and n_total == 82
    assert values.mean() == pytest.approx(expected, abs=0.01)
    assert values.std() < 0.06  # each voxel scatters around the share, not just the mean


def _real_shaped(rng: np.random.Generator, shape=(16, 16, 8), n_volumes=N + 4) -> tuple[np.ndarray, np.ndarray]:
    """A float32 4D array with baselines ~1000, trends, in-band and out-of-band oscillations, noise."""
    t = np.arange(n_volumes) * TR
    n = int(np.prod(shape))
    freqs = rng.uniform(0.005, 0.22, (n, 2))
    waves = np.sin(2 * np.pi * freqs[:, :1] * t + rng.uniform(0, 6, (n, 1))) * rng.uniform(0, 8, (n, 1))
    waves += np.sin(2 * np.pi * freqs[:, 1:] * t) * rng.uniform(0, 8, (n, 1))
    trend = rng.uniform(-0.05, 0.05, (n, 1)) * t + rng.uniform(-1e-4, 1e-4, (n, 1)) * t**2
    data = rng.uniform(500, 1500, (n, 1)) + trend + waves + rng.normal(0, 3, (n, n_volumes))
    data[:, :4] += 300.0  # bright non-steady-state volumes
    mask = rng.random(shape) < 0.6
    return data.reshape(*shape, n_volumes).astype(np.float32), mask


@pytest.mark.parametrize("order,include_nyquist", [(1, True), (2, True), (1, False)])
def test_matches_reference_on_real_shaped_array(order, include_nyquist):
    rng = np.random.default_rng(order)
    data, mask = _real_shaped(rng)
    settings = FalffSettings.from_config({"dummy_volumes": 4, "detrend_order": order, "include_nyquist": include_nyquist})
    result = falff(data, TR, mask, settings)
    assert result.shape == mask.shape and result.dtype == np.float32
    assert np.all(result[~mask] == 0)
    expected = np.array([reference_falff(s[4:], TR, order=order, include_nyquist=include_nyquist) for s in data[mask]])
    np.testing.assert_allclose(result[mask], expected, atol=1e-5, rtol=0)


def test_dummy_volumes_and_memory_order_matter_only_as_documented():
    rng = np.random.default_rng(7)
    data, mask = _real_shaped(rng, shape=(6, 5, 4))
    settings = FalffSettings.from_config({"dummy_volumes": 4})
    c_order = falff(data, TR, mask, settings)
    np.testing.assert_array_equal(falff(np.asfortranarray(data), TR, mask, settings), c_order)
    np.testing.assert_allclose(falff(data[..., 4:], TR, mask), c_order, atol=1e-6)
    # Keeping the bright dummies changes the result: they are a step the detrend cannot remove.
    assert np.abs(falff(data, TR, mask) - c_order)[mask].max() > 0.01


def test_constant_and_pure_trend_voxels_get_zero():
    t = np.arange(N, dtype=np.float32)
    series = np.stack([np.full(N, 1234.0, np.float32), 1000 + 0.5 * t, np.sin(2 * np.pi * 0.05 * t * TR)])
    values = falff_timeseries(series, TR)
    assert values[0] == 0 and values[1] == 0 and values[2] > 0.85


def test_too_few_volumes_criterion_is_the_lower_band_edge():
    rng = np.random.default_rng(0)
    # 1 / (T * 2.2 s) <= 0.01 Hz  <=>  T >= 45.45: 46 volumes pass, 45 fail.
    assert falff_timeseries(rng.standard_normal((3, 46)), TR).shape == (3,)
    with pytest.raises(TooFewVolumesError, match="at least 46 volumes"):
        falff_timeseries(rng.standard_normal((3, 45)), TR)
    with pytest.raises(TooFewVolumesError):  # 50 volumes minus 5 dummies
        falff(rng.standard_normal((2, 2, 2, 50)), TR, None, FalffSettings.from_config({"dummy_volumes": 5}))
    with pytest.raises(TooFewVolumesError, match="Nyquist"):  # TR 6 s: Nyquist 0.083 Hz < 0.1 Hz
        falff_timeseries(rng.standard_normal((3, 200)), 6.0)


def test_settings_reject_unknown_keys_and_bad_values():
    assert FalffSettings.from_config({"band": [0.01, 0.08], "dummy_volumes": 2}).band == (0.01, 0.08)
    with pytest.raises(ValueError, match="detrend"):
        FalffSettings.from_config({"detrend": 1})
    with pytest.raises(ValueError, match=r"falff band must satisfy 0 < low < high"):
        FalffSettings.from_config({"band": (0.1, 0.01)})
    with pytest.raises(ValueError, match=r"falff\.detrend_order: 3 is not allowed"):
        FalffSettings.from_config({"detrend_order": 3})


# --- files ------------------------------------------------------------------------------------


def _write_bold(path: Path, data: np.ndarray, tr_header: float | None = TR, unit: str = "sec") -> Path:
    image = nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0]))
    if tr_header is not None:
        image.header.set_zooms((4.0, 4.0, 4.0, tr_header) if data.ndim == 4 else (4.0, 4.0, 4.0))
    image.header.set_xyzt_units("mm", unit)
    nib.save(image, str(path))
    return path


def _sidecar(path: Path, content: dict | str) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def read_tr(path, sidecar):
    """falff.read_tr with the schema's falff.tr_tolerance (its one default)."""
    from mmssl.preprocess import falff
    from mmssl.settings import schema_default

    return falff.read_tr(path, sidecar, schema_default("falff", "tr_tolerance"))


def test_read_tr_rules(tmp_path):
    bold = _write_bold(tmp_path / "b.nii.gz", np.zeros((2, 2, 2, 5), np.float32))
    assert read_tr(bold, _sidecar(tmp_path / "s.json", {"RepetitionTime": 2.2})) == 2.2
    # Sidecar wins within 1 %: header 2.21 s vs sidecar 2.2 s.
    close = _write_bold(tmp_path / "c.nii.gz", np.zeros((2, 2, 2, 5), np.float32), tr_header=2.21)
    assert read_tr(close, tmp_path / "s.json") == 2.2
    with pytest.raises(BadInputError, match="TR disagreement"):
        read_tr(bold, _sidecar(tmp_path / "far.json", {"RepetitionTime": 2.0}))
    with pytest.warns(TRFromHeaderWarning):
        assert read_tr(bold, None) == pytest.approx(2.2)
    with pytest.warns(TRFromHeaderWarning):  # sidecar without the key: header, with warning
        assert read_tr(bold, _sidecar(tmp_path / "nokey.json", {"EchoTime": 0.03})) == pytest.approx(2.2)
    ms = _write_bold(tmp_path / "ms.nii.gz", np.zeros((2, 2, 2, 5), np.float32), tr_header=2200.0, unit="msec")
    assert read_tr(ms, tmp_path / "s.json") == 2.2  # 2200 ms agrees with 2.2 s
    with pytest.warns(TRFromHeaderWarning):
        assert read_tr(ms, None) == pytest.approx(2.2)
    no_tr = _write_bold(tmp_path / "none.nii.gz", np.zeros((2, 2, 2, 5), np.float32), tr_header=0.0)
    with pytest.raises(BadInputError, match="missing TR"):
        read_tr(no_tr, None)
    with pytest.raises(BadInputError, match="unreadable JSON"):
        read_tr(bold, _sidecar(tmp_path / "bad.json", "{not json"))


def test_falff_file_writes_map_mask_and_mean_matching_the_array_function(tmp_path):
    rng = np.random.default_rng(3)
    shape, n_volumes = (20, 20, 12), N + 3
    i, j, k = np.indices(shape)
    brain = ((i - 9.5) / 7) ** 2 + ((j - 9.5) / 7) ** 2 + ((k - 5.5) / 4.5) ** 2 <= 1  # an ellipsoid "brain"
    t = np.arange(n_volumes) * TR
    data = np.zeros((*shape, n_volumes), np.float32)
    data[brain] = 800 + 10 * np.sin(2 * np.pi * 0.04 * t) + rng.normal(0, 5, (int(brain.sum()), n_volumes))
    bold = _write_bold(tmp_path / "bold.nii.gz", data)
    outs = [tmp_path / "out" / n for n in ("falff.nii.gz", "mask.nii.gz", "mean.nii.gz")]
    result = falff_file(bold, _sidecar(tmp_path / "bold.json", {"RepetitionTime": TR}), *outs, FalffSettings.from_config({"dummy_volumes": 3}))
    falff_map, mask, mean = (nib.load(str(p)) for p in outs)
    assert np.allclose(falff_map.affine, nib.load(str(bold)).affine)
    mask_data = mask.get_fdata() > 0
    assert result.n_volumes == N and result.tr == TR
    assert mask_data.sum() == result.n_mask_voxels
    assert 2 * (mask_data & brain).sum() / (mask_data.sum() + brain.sum()) > 0.9  # Dice with the true brain
    np.testing.assert_allclose(mean.get_fdata()[brain].mean(), 800, rtol=0.01)
    expected = falff(data, TR, mask_data, FalffSettings.from_config({"dummy_volumes": 3}))
    np.testing.assert_allclose(falff_map.get_fdata(), expected, atol=1e-6)
    assert not list((tmp_path / "out").glob(".tmp*"))  # atomic writes leave no temporary files
    # with an ALFF path, the ALFF map too (the same mask; fALFF unchanged)
    result = falff_file(bold, _sidecar(tmp_path / "bold.json", {"RepetitionTime": TR}), *outs,
                        FalffSettings.from_config({"dummy_volumes": 3}), alff_out_path=tmp_path / "out" / "alff.nii.gz")
    alff = nib.load(str(tmp_path / "out" / "alff.nii.gz")).get_fdata()
    expected_alff = amplitude_maps(data, TR, mask_data, FalffSettings.from_config({"dummy_volumes": 3}))[1]
    np.testing.assert_allclose(alff, expected_alff, rtol=1e-6)
    assert result.median_alff == pytest.approx(float(np.median(expected_alff[mask_data])), rel=1e-6)
    np.testing.assert_allclose(nib.load(str(outs[0])).get_fdata(), expected, atol=1e-6)


@pytest.mark.parametrize("case,reason", [
    ("zero_byte", "empty file \\(0 bytes\\)"),
    ("truncated", "corrupt NIfTI|unreadable NIfTI"),
    ("three_d", "expected a 4D BOLD series"),
    ("nan", "NaN"),
    ("short", "too few volumes"),
    ("missing", "file not found"),
])
def test_bad_inputs_raise_bad_input_error_naming_the_file(tmp_path, case, reason):
    path = tmp_path / f"{case}.nii.gz"
    rng = np.random.default_rng(0)
    good = rng.normal(100, 1, (6, 6, 6, 60)).astype(np.float32)
    if case == "zero_byte":
        path.write_bytes(b"")
    elif case == "truncated":
        _write_bold(path, good)
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    elif case == "three_d":
        _write_bold(path, good[..., 0])
    elif case == "nan":
        good[2, 2, 2, 10] = np.nan
        _write_bold(path, good)
    elif case == "short":
        _write_bold(path, good[..., :40])
    sidecar = _sidecar(tmp_path / "s.json", {"RepetitionTime": TR})
    with pytest.raises(BadInputError, match=reason) as error, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        falff_file(path, sidecar, tmp_path / "f.nii.gz", tmp_path / "m.nii.gz", tmp_path / "a.nii.gz")
    assert error.value.path == str(path)
    assert not (tmp_path / "f.nii.gz").exists()


def test_preprocess_bold_excludes_bad_input_with_placeholders_and_fails_on_a_bug(tmp_path, monkeypatch):
    """One bad-input policy: BadInputError excludes the scan (status row, empty placeholders,
    exit 0); any other exception, e.g. a bug planted after fALFF, fails the job loudly and
    writes no status, so Snakemake sees a failed job rather than an excluded scan."""
    import pandas as pd

    from scans import run_preprocess_bold

    rng = np.random.default_rng(5)
    i, j, k = np.indices((12, 12, 8))
    brain = ((i - 5.5) / 5) ** 2 + ((j - 5.5) / 5) ** 2 + ((k - 3.5) / 3.5) ** 2 <= 1
    data = np.where(brain[..., None], 500.0, 0.0) + rng.normal(0, 2, (12, 12, 8, 80)) * brain[..., None]
    sidecar = _sidecar(tmp_path / "s.json", {"RepetitionTime": TR})
    flat = _write_bold(tmp_path / "sub-01_ses-a_task-rest_bold.nii.gz", data[..., 0].astype(np.float32))  # 3D
    rc, status, out = run_preprocess_bold(flat, sidecar, tmp_path / "preproc", falff={"dummy_volumes": 2})
    assert rc == 0 and list(status["reason"]) == ["expected a 4D BOLD series, got shape (12, 12, 8)"]
    assert status.loc[0, "subject"] == "01" and status.loc[0, "session"] == "a" and status.loc[0, "path"] == str(flat)
    assert all(out[k].stat().st_size == 0 for k in out if k != "status")

    import mmssl.preprocess.pipeline as pipeline

    def planted_bug(*args, **kwargs):
        raise ValueError("planted bug: not an input problem")

    monkeypatch.setattr(pipeline, "falff_to_mni", planted_bug)
    bold = _write_bold(tmp_path / "sub-02_ses-a_task-rest_bold.nii.gz", data.astype(np.float32))
    rc, status, out = run_preprocess_bold(bold, sidecar, tmp_path / "preproc", falff={"dummy_volumes": 2})
    assert rc != 0 and status is None  # failed, not excluded
    assert out["falff_native"].stat().st_size > 0  # fALFF itself ran: the bug came after it
    assert isinstance(pd.read_csv(out["confounds"], sep="\t", na_values="n/a")["dvars"].iloc[1], float)
