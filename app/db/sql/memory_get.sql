SELECT value FROM workflow_memory WHERE workflow = $1 AND key = $2
