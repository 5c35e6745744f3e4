"""DetectNet_v2: TAO's grid-box detector (stride-16 coverage + bbox heads) on tf_keras."""
