"""fbnas.search"""
