"""apps.social"""
