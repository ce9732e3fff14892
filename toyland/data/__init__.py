"""Demonstrations and datasets: collection to LeRobotDataset v3, a decode-once training loader,
weighted co-training mixtures, and factor statistics of collected data."""
