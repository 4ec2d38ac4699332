"""Data sources: MovieLens releases, the seeded synthetic generator, and the stream publisher."""
