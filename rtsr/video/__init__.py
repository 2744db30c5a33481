"""Video in, video out: reader (demux + decode), pipeline (device stages), writer (encode + mux)."""
