"""Framework-free helpers of the task runners (the PyTorch tasks and the deploy engine tasks
share them): reading a loaded task section the same way on both sides."""
