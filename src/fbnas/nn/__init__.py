"""fbnas.nn"""
