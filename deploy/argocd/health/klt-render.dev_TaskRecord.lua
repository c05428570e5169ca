-- Argo CD health check for klt-render.dev/TaskRecord (status written by klt-reconciler).
-- Succeeded -> Healthy; Failed -> Degraded, naming the failing task; anything else -> Progressing.
-- Runs in Argo CD's sandbox (Lua 5.1, no string library): only `..`, tostring, ipairs.
local hs = {}
local function describe(t)
  local s = "task " .. tostring(t.definition or "?") .. " (" .. tostring(t.phase or "?")
  if t.workload ~= nil and t.workload ~= "" then
    s = s .. ", workload " .. tostring(t.workload)
  end
  return s .. ") Job " .. tostring(t.job or "?")
end
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for klt-reconciler to record the tasks"
  return hs
end
local tasks = status.tasks or {}
local total, done, failed, first = 0, 0, 0, nil
for _, t in ipairs(tasks) do
  total = total + 1
  if t.state == "Succeeded" then
    done = done + 1
  elseif t.state == "Failed" then
    failed = failed + 1
    if first == nil then
      first = t
    end
  end
end
if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = tostring(done) .. " of " .. tostring(total) .. " task(s) succeeded"
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  if first ~= nil then
    hs.message = describe(first) .. " failed"
    if first.message ~= nil and first.message ~= "" then
      hs.message = hs.message .. ": " .. tostring(first.message)
    end
    if failed > 1 then
      hs.message = hs.message .. " (and " .. tostring(failed - 1) .. " more failed task(s))"
    end
  else
    hs.message = "A task failed"
  end
else
  hs.status = "Progressing"
  hs.message = tostring(status.phase) .. ": " .. tostring(done) .. " of " .. tostring(total) .. " task(s) succeeded"
end
return hs
