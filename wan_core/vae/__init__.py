"""wan_core.vae"""
