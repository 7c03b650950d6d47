import { describe, expect, it } from 'vitest';
import { ortCause } from '../../src/model/run-error.js';

describe("ONNX Runtime's messages cut to their cause", () => {
  it('keeps the node and the reason, drops the source file, C++ signature and assertion', () => {
    expect(
      ortCause(
        "Non-zero status code returned while running Reshape node. Name:'frames' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:84 onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, onnxruntime::TensorShapeVector&, bool) size != 0 && (input_shape_size % size) == 0 was false. The input tensor cannot be reshaped to the requested shape. Input shape:{1,500}, requested shape:{1,-1,32}\n",
      ),
    ).toBe("Reshape node 'frames': The input tensor cannot be reshaped to the requested shape. Input shape:{1,500}, requested shape:{1,-1,32}");
    expect(
      ortCause(
        "Non-zero status code returned while running Pad node. Name:'reflect_pad' Status Message: Pad reflect requires axis length >= 2 after slicing. Input shape:{1,1}",
      ),
    ).toBe("Pad node 'reflect_pad': Pad reflect requires axis length >= 2 after slicing. Input shape:{1,1}");
    expect(
      ortCause(
        'Got invalid dimensions for input: x for the following indices\n index: 1 Got: 3 Expected: 4\n Please fix either the inputs/outputs or the model.',
      ),
    ).toBe('Got invalid dimensions for input: x for the following indices index: 1 Got: 3 Expected: 4 Please fix either the inputs/outputs or the model.');
    expect(ortCause('x'.repeat(1000))).toHaveLength(300);
  });
});
