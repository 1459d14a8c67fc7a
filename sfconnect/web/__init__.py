"""The workbench pages: home, query results, describe suggestions, exports, and the guard that
keeps another site from making the app call Salesforce."""
