"""The validate and nulls stages' computation: the benchmark's planted answers scored, its null screenings, its generation experiments."""
