"""The verification wing: 10-fold verification metrics on insightface .bin pair files, embeddings, benches."""
