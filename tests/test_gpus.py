"""GPU catalog: every entry loads with positive figures, names resolve exactly, custom GPUs validate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kvplan import gpus as gpus_module
from kvplan.errors import InvalidInputError, KvplanError, UnknownGPUError
from kvplan.gpus import GPU, custom_gpu, get_gpu, list_gpus
from kvplan.units import GB, GiB, MiB

GPUS_JSON = Path(gpus_module.__file__).with_name("gpus.json")

REQUIRED = (
    "H100-SXM", "H100-PCIe", "H100-NVL", "H200", "B200", "GB200", "B300", "A100-40GB", "A100-80GB",
    "L40S", "L4", "A10G", "RTX-4090", "RTX-5090", "RTX-6000-Ada", "RTX-PRO-6000",
    "MI300X", "MI325X", "MI355X", "Gaudi3",
)

# Golden rows, each figure with where it was seen.
GOLDEN = [
    # H100 SXM memory: tensara/tensara src/constants/deviceQuery.ts, deviceQuery on Modal H100 (CUDA 12.9)
    ("H100-SXM", "memory_bytes", 85_029_158_912),
    # H100 SXM bandwidth: NVIDIA H100 datasheet SXM column, 3.35 TB/s (aiconfigurator h100_sxm.yaml: 3350 GB/s)
    ("H100-SXM", "bandwidth_bytes_per_s", 3_350_000_000_000),
    # H100 SXM bf16: datasheet 1,979 TFLOPS with sparsity -> 989 dense (aiconfigurator h100_sxm.yaml: 989 TFLOPS)
    ("H100-SXM", "bf16_dense_flops", 989 * 10**12),
    # H100 SXM fp8: datasheet 3,958 TFLOPS with sparsity -> 1,979 dense
    ("H100-SXM", "fp8_dense_flops", 1_979 * 10**12),
    # A100 has no fp8 tensor cores (Ampere)
    ("A100-80GB", "fp8_dense_flops", None),
    # H200: torch total_memory=143156MB on Modal (ai-bot-pro/achatbot skywork_r1v.py comment)
    ("H200", "memory_bytes", 143_156 * MiB),
    # RTX 4090 on Linux: torch total_memory 25393692672 ("23.65 GB") in public env dumps
    ("RTX-4090", "memory_bytes", 25_393_692_672),
    # MI300X: torch on ROCm total_memory=196592MB (ROCm/ROCm#4203) = 192 GiB - 16 MiB
    ("MI300X", "memory_bytes", 192 * GiB - 16 * MiB),
    # L40S: aiconfigurator l40s.yaml / L40S datasheet, 864 GB/s
    ("L40S", "bandwidth_bytes_per_s", 864 * 10**9),
]

ALIASES = [
    ("H100", "H100-SXM"),                    # bare H100 means the SXM part
    ("A100", "A100-80GB"),                   # bare A100 means the 80GB SXM part
    ("h100-sxm", "H100-SXM"),                # case
    ("H100 SXM", "H100-SXM"),                # space instead of hyphen
    ("h100_pcie", "H100-PCIe"),              # underscore
    ("NVIDIA H100 80GB HBM3", "H100-SXM"),   # torch.cuda.get_device_name() on H100 SXM
    ("NVIDIA A100-SXM4-80GB", "A100-80GB"),  # torch device name on A100 80GB SXM
    ("NVIDIA GeForce RTX 4090", "RTX-4090"),
    ("rtx 6000 ada", "RTX-6000-Ada"),
    ("AMD Instinct MI300X", "MI300X"),
    ("gaudi 3", "Gaudi3"),
    ("HL-325L", "Gaudi3"),
    ("  B200  ", "B200"),                    # surrounding whitespace
]

NOT_GPUS = [
    ("H10O", "H100-SXM"),    # letter O for zero: suggest, never accept
    ("H2OO", "H200"),
    ("MI300", "MI300X"),     # missing suffix is a different product family name
    ("L40", "L40S"),         # L40 is a real, different GPU
    ("RTX 6000", None),      # ambiguous (Quadro RTX 6000, RTX 6000 Ada): never guessed
]


def test_catalog_has_every_required_gpu():
    names = [g.name for g in list_gpus()]
    assert sorted(names) == sorted(REQUIRED)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.name)
def test_every_gpu_has_positive_figures(gpu: GPU):
    assert isinstance(gpu.memory_bytes, int) and gpu.memory_bytes > 0
    assert isinstance(gpu.bandwidth_bytes_per_s, int) and gpu.bandwidth_bytes_per_s > 0
    assert isinstance(gpu.bf16_dense_flops, int) and gpu.bf16_dense_flops > 0
    assert gpu.fp8_dense_flops is None or gpu.fp8_dense_flops >= gpu.bf16_dense_flops
    assert gpu.source and gpu.memory_note and gpu.vendor
    assert gpu.memory_bytes_source in ("measured", "measured-rounded", "fixture", "derived")


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.name)
def test_reported_memory_is_near_the_marketed_size(gpu: GPU):
    # The framework sees a little less than the marketed size (read as GB or GiB), never more.
    marketed = int(gpu.marketing_memory.removesuffix("GB"))
    assert 0.9 * marketed * GB < gpu.memory_bytes <= marketed * GiB


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.name)
def test_every_name_and_alias_resolves_to_its_gpu(gpu: GPU):
    assert get_gpu(gpu.name) is gpu
    for alias in gpu.aliases:
        assert get_gpu(alias) is gpu


@pytest.mark.parametrize("name,field,expected", GOLDEN)
def test_golden_rows(name, field, expected):
    assert getattr(get_gpu(name), field) == expected


@pytest.mark.parametrize("alias,expected", ALIASES)
def test_aliases_resolve(alias, expected):
    assert get_gpu(alias).name == expected


@pytest.mark.parametrize("name,suggested", NOT_GPUS)
def test_near_miss_raises_with_suggestion(name, suggested):
    with pytest.raises(UnknownGPUError) as info:
        get_gpu(name)
    err = info.value
    assert isinstance(err, KeyError) and isinstance(err, KvplanError)
    assert err.gpu == name
    if suggested is not None:
        assert suggested in err.suggestions
        assert suggested in str(err)


def test_unknown_gpu_without_close_match_has_no_suggestions():
    with pytest.raises(KeyError) as info:
        get_gpu("toaster")
    assert info.value.suggestions == ()


def test_non_string_name_is_invalid_input():
    with pytest.raises(InvalidInputError) as info:
        get_gpu(100)  # type: ignore[arg-type]
    assert info.value.field == "gpu"


def test_to_dict_is_json_able_with_stable_keys():
    d = get_gpu("H100").to_dict()
    assert list(d) == [
        "name", "aliases", "vendor", "marketing_memory", "memory_bytes", "memory_bytes_source",
        "bandwidth_bytes_per_s", "bf16_dense_flops", "fp8_dense_flops", "source", "memory_note",
    ]
    assert json.loads(json.dumps(d)) == d
    assert get_gpu("A100").to_dict()["fp8_dense_flops"] is None


def test_to_dict_round_trips_the_json_file():
    raw = json.loads(GPUS_JSON.read_text(encoding="utf-8"))
    assert [g.to_dict() for g in list_gpus()] == raw


def test_catalog_is_loaded_once():
    assert list_gpus() is list_gpus()


@pytest.mark.parametrize(
    "memory,expected",
    [
        ("48GiB", 48 * GiB),
        ("80GB", 80 * 10**9),  # decimal, as marketed
        (85_029_158_912, 85_029_158_912),
        ("85029158912", 85_029_158_912),
    ],
)
def test_custom_gpu_parses_memory(memory, expected):
    gpu = custom_gpu(memory)
    assert gpu.memory_bytes == expected
    assert gpu.bandwidth_bytes_per_s == 0 and gpu.bf16_dense_flops == 0  # 0 = unknown
    assert gpu.fp8_dense_flops is None
    assert gpu.name == "custom" and gpu.memory_bytes_source == "user"
    json.dumps(gpu.to_dict())


@pytest.mark.parametrize(
    "bandwidth,expected",
    [
        ("3.35TB/s", 3_350_000_000_000),
        ("864 GB/s", 864_000_000_000),
        ("2.039TB/s", 2_039_000_000_000),
        ("0.017TB/s", 17_000_000_000),  # exact decimal arithmetic, no float rounding
        ("1792GBps", 1_792_000_000_000),
        (3_350_000_000_000, 3_350_000_000_000),
    ],
)
def test_custom_gpu_parses_bandwidth(bandwidth, expected):
    assert custom_gpu("80GB", bandwidth=bandwidth).bandwidth_bytes_per_s == expected


def test_custom_gpu_keeps_name_and_flops():
    gpu = custom_gpu("96GiB", bandwidth="1.792TB/s", bf16_flops=503.8e12, name="my-card")
    assert (gpu.name, gpu.bf16_dense_flops) == ("my-card", 503_800_000_000_000)


@pytest.mark.parametrize(
    "memory",
    [
        "-5GB",   # negative
        "lots",   # not a size
        "0GB",    # zero
        0,        # zero as int
        -1,       # negative int
        True,     # a boolean is not a size
        "80 parsecs",
    ],
)
def test_bad_custom_memory_names_gpu_memory(memory):
    with pytest.raises(InvalidInputError) as info:
        custom_gpu(memory)
    assert info.value.field == "gpu_memory"
    assert "gpu_memory" in str(info.value)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"bandwidth": "fast"}, "bandwidth"),         # not a rate
        ({"bandwidth": "-3TB/s"}, "bandwidth"),       # negative
        ({"bandwidth": 0}, "bandwidth"),              # zero is "unknown": say it by leaving it out
        ({"bandwidth": "0.5B/s"}, "bandwidth"),       # fractional bytes
        ({"bandwidth": 10**18}, "bandwidth"),         # absurd
        ({"bf16_flops": 0}, "bf16_flops"),
        ({"bf16_flops": -1e12}, "bf16_flops"),
        ({"bf16_flops": float("nan")}, "bf16_flops"),
        ({"bf16_flops": float("inf")}, "bf16_flops"),
        ({"bf16_flops": "989e12"}, "bf16_flops"),     # a string, not a number
        ({"name": ""}, "gpu"),
    ],
)
def test_bad_custom_figures_raise_invalid_input(kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        custom_gpu("80GB", **kwargs)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_bad_catalog_entry_is_rejected(monkeypatch, tmp_path):
    # Validation on load: a zero or fractional figure in gpus.json is a packaging bug, not a GPU.
    entry = get_gpu("L4").to_dict()
    for bad in ({"memory_bytes": 0}, {"bandwidth_bytes_per_s": 3.5e11}, {"fp8_dense_flops": -1}):
        with pytest.raises(ValueError, match="gpus.json"):
            gpus_module._gpu_from_entry({**entry, **bad}, 0)


def test_module_imports_only_stdlib():
    import subprocess

    code = (
        "import sys, kvplan.gpus; "
        "heavy = {'torch', 'numpy', 'streamlit', 'plotly', 'huggingface_hub'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
