"""What is measured and how it is tested: the metrics (M, keywords, VADER, KL) and the statistics (intervals, p, FDR)."""
