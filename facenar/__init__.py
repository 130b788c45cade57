"""facenar: Neural Architecture Refinement for face recognition."""
