"""Where training data comes from, outside any Lambda: MovieLens releases (``movielens``), the seeded
synthetic generator (``synthetic``, the embedded default of ``make demo``) and the publisher that plays
a dataset into the event stream as real events (``publisher``)."""
