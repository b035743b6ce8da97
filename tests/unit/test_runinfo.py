"""What run_info.json says of the machine, and how the report names it."""

from babyllama.runinfo import cpu_model, hardware_line, machine
from babyllama.hardware import cpu_has_native_bf16


def test_machine_names_the_cpu_and_its_bf16():
    m = machine()
    assert m["cpu"] == cpu_model() and m["cpu"]
    assert m["cpu_native_bf16"] == cpu_has_native_bf16()
    assert m["cuda"] == bool(m["gpus"])


def test_hardware_line():
    assert hardware_line({"cpus": 2, "cpu": "Intel Xeon", "cpu_native_bf16": True, "gpus": []}) == \
        "2 cores Intel Xeon, bf16 native"
    assert hardware_line({"cpus": 16, "cpu": "AMD EPYC", "cpu_native_bf16": False, "gpus": ["NVIDIA H200"]}) == \
        "1 x NVIDIA H200"
    assert hardware_line({"cpus": 2, "processor": ""}) == "2 cores CPU"  # written before the CPU was recorded
    assert hardware_line(None) == "-"
