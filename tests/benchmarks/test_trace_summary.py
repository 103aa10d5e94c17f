"""`trace_summary.category`: kernel names from GPU and CPU traces, by kind."""

import pytest

from benchmarks.trace_summary import category


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # XLA names fusions after their ops: a convert is not a convolution.
        ("loop_convert_fusion_23", "fusion"),
        ("input_convert_reduce_fusion_7", "fusion"),
        ("input_add_reduce_fusion_35", "fusion"),
        # library and XLA-generated matmuls and convolutions
        ("gemm_fusion_dot_629", "matmul/conv"),
        ("nvjet_sm90_tst_128x224_64x4_2x1_v_bz_coopA_NNT", "matmul/conv"),
        ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "matmul/conv"),
        ("convolution.23", "matmul/conv"),
        ("conv_general_dilated.69", "matmul/conv"),
        # cuDNN's flash attention and its helper kernels
        ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64", "attention"),
        ("void cudnn::fusion::compute_dot_do_o_specialized<true, 64>(void const*", "attention"),
        ("copy.3", "copy/collective"),
        ("ThunkExecutor::Execute", "other"),
    ],
)
def test_kernel_categories(name, expected):
    assert category(name) == expected
