"""HTML reports: a masker's (:mod:`.html`, nilearn's ``generate_report``) and a batch store's
(:mod:`.study`).  Their figures need the ``daskmasker[plotting]`` extra (nilearn's plotting)."""
