"""The model toolchain: ``edge-agent models build NAME…`` rebuilds the shipped models.

One module per model family (:mod:`.face`, :mod:`.pose`, :mod:`.audio`; the speech front end
lives in :mod:`agent.training.frontend`), one int8 recipe (:mod:`.quantize`), shared helpers
(:mod:`.common`) and the command (:mod:`.cli`). The heavy build-time libraries (onnx,
tflite2onnx, scikit-image, torch) are imported inside the functions that need them, so the
agent's run path never imports them. Needs the ``models`` extra.
"""
