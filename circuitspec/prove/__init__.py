"""Z3 reasoning about specs: can the claims all be true at once?"""
