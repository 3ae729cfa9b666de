"""The PyTorch frontend: capture a model with torch.export, fold constants, lower to the IR.

    captured = capture(model, (input_ids,))      # or capture_pt2("model.pt2")
    lowered = lower(captured)                    # lowered.graph, lowered.params, ...
    captured, lowered = capture_and_lower(model, (input_ids,))  # both; a size-only model's
                                                 # identical layers are traced once and stamped
"""
from compiler.frontend.capture import Captured, capture, capture_pt2, eager_outputs
from compiler.frontend.lower import Lowered, lower
from compiler.frontend.repeat import capture_and_lower

__all__ = ["Captured", "Lowered", "capture", "capture_and_lower", "capture_pt2", "eager_outputs", "lower"]
