"""HTTP controllers, one module per area; each keeps its wire schemas next to it."""
