-- Argo CD health check for sqlitekube.dev/SqliteDatabase. Put it in argocd-cm as
--   resource.customizations.health.sqlitekube.dev_SqliteDatabase: |
--     <this file>
-- (docs/operator.md#gitops). Tested by operator/tests/argocd_health.rs with Lua 5.1, the
-- language version of Argo CD's interpreter.
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe the database"
  return hs
end
local gen = obj.metadata and obj.metadata.generation
if gen ~= nil and obj.status.observedGeneration ~= nil and obj.status.observedGeneration < gen then
  hs.status = "Progressing"
  hs.message = "the operator has not observed the latest spec yet"
  return hs
end
local ready = nil
local bootstrapped = nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Bootstrapped" then bootstrapped = c end
end
local phase = obj.status.phase
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = (ready and ready.message) or "failed"
  return hs
end
if phase == "Deleting" then
  hs.status = "Progressing"
  hs.message = "deleting"
  return hs
end
if bootstrapped ~= nil and bootstrapped.status ~= "True" then
  hs.status = "Progressing"
  hs.message = "bootstrapping: " .. (bootstrapped.message or "")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "ready"
  return hs
end
if phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = (ready and ready.message) or "degraded"
  return hs
end
hs.status = "Progressing"
hs.message = (ready and ready.message) or "waiting for Ready"
return hs
