"""The roofline estimate's reading of a compiled GPU program (hand-written HLO, no GPU)."""

import pytest

from benchmarks.roofline import (
    array_bytes,
    estimate_seconds,
    kernel_bytes,
)

HLO = """HloModule jit_step

%fused_add (p0: f32[256,1024]) -> f32[256,1024] {
  %p0 = f32[256,1024]{1,0} parameter(0)
  ROOT %add = f32[256,1024]{1,0} add(%p0, %p0)
}

ENTRY %main (x: f32[256,1024], w: bf16[1024,512]) -> (f32[256,512]) {
  %x = f32[256,1024]{1,0} parameter(0)
  %w = bf16[1024,512]{1,0} parameter(1)
  %fusion = f32[256,1024]{1,0} fusion(%x), kind=kLoop, calls=%fused_add
  %convert = bf16[256,1024]{1,0} convert(%fusion)
  %gemm = (f32[256,512]{1,0}, s8[4194304]{0}) custom-call(%convert, %w), custom_call_target="__cublas$lt$matmul"
  %gte = f32[256,512]{1,0} get-tuple-element(%gemm), index=0
  %attn = (bf16[2,64,8,64]{3,2,1,0}, u8[0]{0}) custom-call(%convert, %convert), custom_call_target="__cudnn$fmhaSoftmax"
  ROOT %tuple = (f32[256,512]{1,0}) tuple(%gte)
}
"""  # noqa: E501 (HLO lines as XLA prints them)


def test_array_bytes_counts_every_array_of_a_type():
    assert array_bytes("(bf16[2,3]{1,0}, f32[4]{0}, pred[])") == 12 + 16 + 1


def test_kernel_bytes_classifies_kernels_and_counts_their_reads_and_writes():
    mib = 2**20
    classes = kernel_bytes(HLO)
    # fusion: reads x (1 MiB), writes 1 MiB; convert: reads 1 MiB, writes 0.5 MiB.
    assert classes["memory-bound"] == [2, 3.5 * mib]
    # gemm: reads the converted x (0.5 MiB) and w (1 MiB), writes 0.5 MiB + 4 MiB workspace.
    assert classes["matmul"] == [1, 6 * mib]
    # fused attention: reads the converted x twice, writes 128 KiB.
    assert classes["attention (fused)"] == [1, 1 * mib + 2 * 64 * 8 * 64 * 2]


def test_kernel_bytes_refuses_programs_with_control_flow():
    looped = HLO.replace(
        "%fusion = f32[256,1024]{1,0} fusion(%x), kind=kLoop,",
        "%fusion = f32[256,1024]{1,0} while(%x), condition=%c, body=",
    )
    with pytest.raises(ValueError, match="'while' in the entry computation"):
        kernel_bytes(looped)


def test_estimate_charges_each_class_at_its_own_rate():
    efficiency = {"matmul": 0.5, "attention": 0.25, "bandwidth": 0.8}
    # 6 TFLOP of which 2 in fused attention, 80 GB memory-bound, 1000 TFLOP/s, 2 TB/s:
    # 4/500 + 2/250 s of compute and 80/1.6 ms of memory traffic.
    seconds = estimate_seconds(6e12, 2e12, 80e9, 1e15, 2e12, efficiency)
    assert seconds == pytest.approx(0.008 + 0.008 + 0.050)
