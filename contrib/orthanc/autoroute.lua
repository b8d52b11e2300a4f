-- Orthanc → medforensics gateway: send every new series, once stable, to the gateway.
--
-- Add to the Orthanc configuration:
--   "LuaScripts": ["/etc/orthanc/autoroute.lua"],
--   "DicomModalities": { "medforensics": ["MEDFORENSICS", "127.0.0.1", 11112] },
--   "StableAge": 10
--
-- Series are skipped when they are our own result objects (Manufacturer "medforensics") or
-- when they came back from the gateway (stored by the AE title below), so a gateway that
-- forwards to this same Orthanc never loops.

local GATEWAY = 'medforensics'        -- key in "DicomModalities"
local GATEWAY_AET = 'MEDFORENSICS'    -- the gateway's own AE title (it calls us with it)

local function remote_aet(seriesId)
  local instances = ParseJson(RestApiGet('/series/' .. seriesId .. '/instances'))
  if #instances == 0 then
    return nil
  end
  local ok, aet = pcall(RestApiGet, '/instances/' .. instances[1]['ID'] .. '/metadata/RemoteAET')
  if ok then
    return aet
  end
  return nil
end

function OnStableSeries(seriesId, tags, metadata)
  local manufacturer = string.lower(tags['Manufacturer'] or '')
  local description = string.lower(tags['SeriesDescription'] or '')
  if manufacturer == 'medforensics' or string.sub(description, 1, 13) == 'medforensics ' then
    return
  end
  if remote_aet(seriesId) == GATEWAY_AET then
    return
  end
  print('medforensics autoroute: series ' .. seriesId .. ' -> ' .. GATEWAY)
  RestApiPost('/modalities/' .. GATEWAY .. '/store',
              DumpJson({ Resources = { seriesId }, Asynchronous = true }, true))
end
