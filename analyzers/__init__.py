"""collabcoder.analyzers"""
