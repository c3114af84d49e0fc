"""collabcoder.training"""
